// Alerts: what needs a decision now (or at a past moment), from alerts.events. An alert is
// open from its 'open' row to its 'closed' row; the newest row of each says which it is.

import { type Api, hasDataset } from './api';
import { el, fixed, hhmm } from './format';
import { t } from './i18n';

export interface AlertRow {
  alert_id: string;
  kind: 'congestion' | 'lot_full' | 'threshold';
  subject_id: number;
  /** A sensor's entity id (threshold alerts). */
  subject_ref: string | null;
  district: string | null;
  loc: { lon: number; lat: number } | null;
  value: number;
  since: string;
  detail: string;
}

/** Whether this hub keeps alerts. */
export async function hasAlerts(api: Api): Promise<boolean> {
  return hasDataset(api, 'alerts.events');
}

/** The alerts open at `at` (now when null), worst first within each kind. */
export async function openAlerts(api: Api, purpose: string, at: Date | null): Promise<AlertRow[]> {
  const until = at ? `WHERE at <= TIMESTAMP '${at.toISOString()}'` : '';
  return api.sql<AlertRow>(
    `SELECT alert_id, kind, subject_id, subject_ref, district, loc, value, since, detail FROM
       (SELECT *, row_number() OVER (PARTITION BY alert_id ORDER BY at DESC, state = 'closed' DESC) AS rn
          FROM alerts.events ${until})
      WHERE rn = 1 AND state = 'open'
      ORDER BY kind, value DESC, subject_id`,
    purpose,
  );
}

/** Alerts opened in the 24 hours up to `at` (or the newest change). */
export async function openedInDay(api: Api, purpose: string, at: Date | null): Promise<number> {
  const end = at ? `TIMESTAMP '${at.toISOString()}'` : '(SELECT max(at) FROM alerts.events)';
  const rows = await api.sql<{ n: number }>(
    `SELECT count(*) AS n FROM alerts.events
      WHERE state = 'open' AND at <= ${end} AND at > ${end} - INTERVAL '24 hours'`,
    purpose,
  );
  return Number(rows[0]?.n ?? 0);
}

/** The alert list for the side panel; `onPick` when an alert is clicked. */
export function alertList(
  alerts: AlertRow[],
  openedToday: number,
  onPick: (a: AlertRow) => void,
  shown = 8,
): HTMLElement {
  const head = el(
    'h2',
    {},
    t('alerts.title'),
    el('span', { class: 'alerts-count', 'data-open': String(alerts.length) }, ` ${alerts.length}`),
  );
  const note = el('div', { class: 'alerts-note' }, `${t('alerts.day')}: ${openedToday}`);
  if (!alerts.length) {
    return el('div', { class: 'alerts' }, head, el('div', { class: 'alerts-none' }, t('alerts.none_open')), note);
  }
  const items = alerts.slice(0, shown).map((a) => {
    const what =
      a.kind === 'congestion'
        ? `${t('alerts.congestion')} · ${t('link.title')} ${a.subject_id}${a.district ? ` · ${a.district}` : ''}`
        : a.kind === 'threshold'
          ? `${t('alerts.threshold')} · ${a.district ?? ''} · ${a.detail.split(':')[0]}`
          : `${t('alerts.lot_full')} · ${t('parking.lot')} ${a.subject_id}`;
    const value =
      a.kind === 'congestion'
        ? `${t('ranking.di')} ${fixed(Number(a.value))}`
        : a.kind === 'threshold'
          ? String(Number(a.value))
          : `${Math.round(Number(a.value) * 100)}%`;
    const item = el(
      'li',
      { class: `alert alert-${a.kind}`, 'data-alert': a.alert_id, title: a.detail },
      el('span', { class: 'alert-what' }, what),
      el('span', { class: 'alert-value' }, value),
      el('span', { class: 'alert-since' }, `${t('alerts.since')} ${hhmm(a.since)}`),
    );
    item.addEventListener('click', () => onPick(a));
    return item;
  });
  const more = alerts.length > shown ? [el('div', { class: 'alerts-note' }, `+${alerts.length - shown} ${t('alerts.more')}`)] : [];
  return el('div', { class: 'alerts' }, head, el('ul', { class: 'alert-list' }, ...items), ...more, note);
}

/** The open alerts as map features (those with a place). */
export function alertFeatures(alerts: AlertRow[]): GeoJSON.FeatureCollection {
  return {
    type: 'FeatureCollection',
    features: alerts
      .filter((a) => a.loc)
      .map((a, i) => ({
        type: 'Feature',
        id: i,
        properties: { alert_id: a.alert_id, kind: a.kind, subject_id: Number(a.subject_id) },
        geometry: { type: 'Point', coordinates: [a.loc!.lon, a.loc!.lat] },
      })),
  };
}
