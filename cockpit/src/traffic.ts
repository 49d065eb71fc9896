// The traffic queries the pages share. Windows are in the data's time (the newest bin),
// not the wall clock, so a replayed or historical day reads the same as a live one.

import type { Api } from './api';
import { CITY_TZ, cityOffset, el, hhmm } from './format';
import { t } from './i18n';
import type { Context } from './page';

export interface LinkDelay {
  link_id: number;
  district: string;
  di: number;
  n: number;
}

/** Links ranked over the last hour need this many traversals (as indices.ranking). */
export const RANK_MIN_TRAVERSALS = 20;

/** A point in time as a SQL literal; `null` means "the newest data" (`max` of `column`). */
export function asOf(at: Date | null, table: string, column: string): string {
  return at ? `TIMESTAMP '${at.toISOString()}'` : `(SELECT max(${column}) FROM ${table})`;
}

/** The time a page should show: `?at=` in its route (a past moment), or null for live. */
export function atParam(params: URLSearchParams): Date | null {
  const text = params.get('at');
  if (!text) return null;
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? null : at;
}

/**
 * The control that picks the moment a page shows: a time of day on the day being shown
 * (`#at`) and a button back to live (`#live`). Choosing a time navigates to
 * `<page>?at=<that time, with the city's UTC offset>`.
 */
export function timeBar(ctx: Context, page: string, at: Date | null): HTMLElement {
  const when = el('input', { type: 'time', id: 'at', step: '900' });
  if (at) when.value = hhmm(at.toISOString());
  const liveButton = el('button', { type: 'button', class: at ? 'ghost' : '', id: 'live' }, t('time.live'));
  when.addEventListener('change', () => {
    const day = at?.toISOString() ?? ctx.live.latest?.at ?? new Date().toISOString();
    // The chosen time on the day being shown, in the city's time zone (its offset that day:
    // near a clock change the offset of the day shown, which is what a person means).
    const date = new Date(day).toLocaleDateString('en-CA', { timeZone: CITY_TZ });
    const offset = cityOffset(new Date(day));
    if (when.value) ctx.navigate(`${page}?at=${encodeURIComponent(`${date}T${when.value}:00${offset}`)}`);
  });
  liveButton.addEventListener('click', () => ctx.navigate(page));
  return el('div', { class: 'time-bar' }, el('span', {}, at ? t('time.as_of') : t('time.live_now')), when, liveButton);
}

/**
 * Each link's traversal-weighted delay index over the `hours` up to `at` (default: the
 * newest data; the hour is the four 15-minute bins that end by then), most delayed first.
 */
export async function linkDelays(api: Api, purpose: string, at: Date | null = null, hours = 1): Promise<LinkDelay[]> {
  const end = asOf(at, 'indices.link_travel', 'bin');
  const rows = await api.sql<LinkDelay>(
    `SELECT link_id, district,
            sum(delay_index * traversals) / sum(traversals) AS di,
            sum(traversals) AS n
       FROM indices.link_travel
      WHERE bin > ${end} - INTERVAL '${hours} hours' AND bin <= ${end}
      GROUP BY link_id, district
      ORDER BY di DESC`,
    purpose,
  );
  return rows.map((r) => ({ ...r, link_id: Number(r.link_id), di: Number(r.di), n: Number(r.n) }));
}

/** The congestion ranking: links with enough traversals, most delayed first. */
export function ranking(delays: LinkDelay[]): LinkDelay[] {
  return delays.filter((d) => d.n >= RANK_MIN_TRAVERSALS).sort((a, b) => b.di - a.di);
}

export interface DelayPoint {
  bin: string;
  district: string;
  delay_index: number;
  traversals: number;
}

/** The delay index per 15 minutes over the newest day of data, city and districts. */
export async function delaySeries(api: Api, purpose: string, cityOnly = false): Promise<DelayPoint[]> {
  return api.sql<DelayPoint>(
    `SELECT bin, district, delay_index, traversals
       FROM indices.delay
      WHERE bin > (SELECT max(bin) FROM indices.delay) - INTERVAL '24 hours'
        ${cityOnly ? "AND district = 'city'" : ''}
      ORDER BY bin`,
    purpose,
  );
}
