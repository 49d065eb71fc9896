// One link's story: its travel times over the newest day and where it ranks now.

import type { Api } from './api';
import { AXIS, chart } from './charts';
import { diColor, el, fixed, hhmm, int } from './format';
import { t } from './i18n';
import type { Network } from './network';
import { type LinkDelay, ranking } from './traffic';

interface TravelRow {
  bin: string;
  median_s: number;
  p25_s: number;
  p75_s: number;
  traversals: number;
  delay_index: number;
}

/** An empty congestion-ranking table (`#ranking`) and its body, for [`fillRanking`]. */
export function rankingTable(): { table: HTMLTableElement; body: HTMLTableSectionElement } {
  const body = el('tbody');
  const head = ['#', t('ranking.link'), t('ranking.district'), t('ranking.di'), t('ranking.n')];
  const table = el(
    'table',
    { class: 'ranking', id: 'ranking' },
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    body,
  );
  return { table, body };
}

/** The congestion ranking's top `limit` rows into `body`; a click on a row opens its link. */
export function fillRanking(body: HTMLElement, delays: LinkDelay[], limit: number, open: (linkId: number) => void): void {
  const top = ranking(delays).slice(0, limit);
  body.replaceChildren(
    ...top.map((d, i) => {
      const row = el(
        'tr',
        { 'data-link': String(d.link_id) },
        el('td', {}, String(i + 1)),
        el('td', {}, String(d.link_id)),
        el('td', {}, d.district),
        el('td', {}, el('span', { class: 'di-chip', style: `background:${diColor(d.di)}` }, fixed(d.di))),
        el('td', {}, int(d.n)),
      );
      row.addEventListener('click', () => open(d.link_id));
      return row;
    }),
  );
  if (top.length === 0) body.append(el('tr', {}, el('td', { colspan: '5', class: 'muted' }, t('ranking.empty'))));
}

export interface LinkPanel {
  node: HTMLElement;
  /** Opens a link; `rankLabel` names the window `delays` cover (default: the last hour). */
  show(linkId: number, delays: LinkDelay[], rankLabel?: string): Promise<void>;
  dispose(): void;
}

export function linkPanel(api: Api, net: Network): LinkPanel {
  const title = el('h3');
  const facts = el('div', { class: 'link-facts' });
  const plot = el('div', { class: 'link-chart' });
  const close = el('button', { class: 'close', type: 'button' }, t('link.close'));
  const node = el('section', { class: 'link-panel', hidden: '' }, close, title, facts, plot);
  let current: ReturnType<typeof chart> | null = null;
  close.addEventListener('click', () => {
    node.hidden = true;
  });
  return {
    node,
    async show(linkId, delays, rankLabel = 'link.rank') {
      if (!Number.isInteger(linkId)) return;
      const info = net.byLink.get(linkId);
      node.hidden = false;
      node.dataset.link = String(linkId);
      title.textContent = `${t('link.title')} ${linkId}`;
      const ranked = ranking(delays);
      const position = ranked.findIndex((d) => d.link_id === linkId);
      const now = delays.find((d) => d.link_id === linkId);
      facts.replaceChildren(
        el(
          'div',
          {},
          `${info?.district ?? ''} · ${info?.from_checkpoint ?? '?'} → ${info?.to_checkpoint ?? '?'} · ${int(info?.length_m ?? 0)} m · ${t('link.freeflow')} ${int(info?.freeflow_s ?? 0)} ${t('link.seconds')}`,
        ),
        el(
          'div',
          { class: 'link-rank' },
          `${t(rankLabel)}: `,
          el(
            'strong',
            { 'data-rank': position >= 0 ? String(position + 1) : '' },
            position >= 0 ? `#${position + 1} / ${ranked.length}` : t('link.unranked'),
          ),
          now
            ? el(
                'span',
                { class: 'di-chip', style: `background:${diColor(now.di)}` },
                `${t('ranking.di')} ${fixed(now.di)} (${int(now.n)})`,
              )
            : '',
        ),
      );
      const rows = await api.sql<TravelRow>(
        `SELECT bin, median_s, p25_s, p75_s, traversals, delay_index
           FROM indices.link_travel
          WHERE link_id = ${linkId}
            AND bin > (SELECT max(bin) FROM indices.link_travel) - INTERVAL '24 hours'
          ORDER BY bin`,
        'cockpit: link travel time history',
      );
      current?.dispose();
      current = chart(plot);
      plot.dataset.points = String(rows.length);
      const x = rows.map((r) => hhmm(r.bin));
      current.chart.setOption({
        animation: false,
        grid: { left: 48, right: 16, top: 28, bottom: 28 },
        legend: { textStyle: { color: '#cbd5e1' }, top: 0 },
        tooltip: { trigger: 'axis' },
        xAxis: { type: 'category', data: x, ...AXIS },
        yAxis: { type: 'value', name: t('link.seconds'), ...AXIS },
        series: [
          { name: t('link.p25'), type: 'line', data: rows.map((r) => r.p25_s), showSymbol: false, lineStyle: { width: 1, type: 'dashed' } },
          {
            name: t('link.median'),
            type: 'line',
            data: rows.map((r) => r.median_s),
            showSymbol: false,
            lineStyle: { width: 2 },
            markLine: info
              ? { symbol: 'none', data: [{ yAxis: info.freeflow_s, name: t('link.freeflow') }], lineStyle: { color: '#2fbf71' } }
              : undefined,
          },
          { name: t('link.p75'), type: 'line', data: rows.map((r) => r.p75_s), showSymbol: false, lineStyle: { width: 1, type: 'dashed' } },
        ],
      });
    },
    dispose() {
      current?.dispose();
    },
  };
}
