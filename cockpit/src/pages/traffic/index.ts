// Traffic: the delay index over the day for the city and each district, the full
// congestion ranking, and any link's travel-time history.

import { AXIS, chart } from '../../charts';
import { el, fixed, hhmm } from '../../format';
import { t } from '../../i18n';
import type { IndexEvent } from '../../live';
import { fillRanking, linkPanel, rankingTable } from '../../linkpanel';
import { network } from '../../network';
import type { Context, Page } from '../../page';
import { atParam, delaySeries, type LinkDelay, linkDelays, ranking, timeBar } from '../../traffic';

const PURPOSE = 'cockpit: traffic';

/** The bin (as the axis labels it) of the last 15 minutes that ended by `at`, if any. */
function markAt(bins: string[], at: Date): { xAxis: string }[] {
  const last = bins.filter((b) => new Date(b) <= at).at(-1);
  return last ? [{ xAxis: hhmm(last) }] : [];
}

const page: Page = {
  id: 'traffic',
  label: 'nav.traffic',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    // Live by default; `?at=` ranks the hour up to a past moment (the morning peak).
    const at = atParam(ctx.params);
    const plot = el('div', { class: 'day-chart', id: 'delay-chart' });
    const { table, body: rankingBody } = rankingTable();
    const hint = el('p', { class: 'muted', id: 'ranking-hint' }, t('traffic.hint'));
    const panelSlot = el('div');
    root.append(
      el(
        'div',
        { class: 'traffic' },
        el('section', { class: 'card wide' }, el('h2', {}, t('traffic.title')), plot),
        el(
          'section',
          { class: 'card' },
          el('h2', {}, t('ranking.title')),
          timeBar(ctx, 'traffic', at),
          hint,
          table,
        ),
        el('section', { class: 'card' }, panelSlot),
      ),
    );
    const day = chart(plot);
    let delays: LinkDelay[] = [];
    let panel: ReturnType<typeof linkPanel> | null = null;

    const drawDay = async () => {
      const points = await delaySeries(api, PURPOSE);
      const bins = [...new Set(points.map((p) => p.bin))];
      const index = new Map(bins.map((b, i) => [b, i]));
      const districts = [...new Set(points.map((p) => p.district))].sort((a, b) =>
        a === 'city' ? -1 : b === 'city' ? 1 : a.localeCompare(b),
      );
      const series = districts.map((d) => {
        const data: (number | null)[] = bins.map(() => null);
        for (const p of points) if (p.district === d) data[index.get(p.bin)!] = Number(p.delay_index);
        return {
          name: d === 'city' ? t('traffic.city') : d,
          type: 'line' as const,
          data,
          showSymbol: false,
          connectNulls: true,
          lineStyle: { width: d === 'city' ? 3.5 : 1.2 },
          z: d === 'city' ? 10 : 2,
          // The moment being looked back at, on the city's line.
          ...(at && d === 'city'
            ? {
                markLine: {
                  symbol: 'none',
                  silent: true,
                  label: { color: '#cbd5e1', formatter: hhmm(at.toISOString()) },
                  lineStyle: { color: '#cbd5e1', type: 'dashed' as const },
                  data: markAt(bins, at),
                },
              }
            : {}),
        };
      });
      plot.dataset.series = String(series.length);
      day.chart.setOption(
        {
          animation: false,
          grid: { left: 48, right: 24, top: 48, bottom: 32 },
          legend: { type: 'scroll', textStyle: { color: '#cbd5e1' }, top: 0 },
          tooltip: { trigger: 'axis', valueFormatter: (v: unknown) => (typeof v === 'number' ? fixed(v) : '—') },
          xAxis: { type: 'category', data: bins.map(hhmm), ...AXIS },
          yAxis: { type: 'value', min: 1, ...AXIS },
          series,
        },
        { notMerge: true },
      );
    };

    // Which window the ranking covers: the hour, or the day when the hour ranks no link.
    let rankLabel = 'link.rank';
    const drawRanking = async () => {
      delays = await linkDelays(api, PURPOSE, at);
      hint.textContent = t('traffic.hint');
      rankLabel = 'link.rank';
      // A quiet hour (the night) ranks no link: the day so far instead, and it says so.
      if (!ranking(delays).length) {
        const day = await linkDelays(api, PURPOSE, at, 24);
        if (ranking(day).length) {
          delays = day;
          hint.textContent = t('ranking.day_instead');
          rankLabel = 'link.rank_day';
        }
      }
      fillRanking(rankingBody, delays, 20, (id) => void panel?.show(id, delays, rankLabel));
    };

    const unsubscribe = ctx.live.on((event: IndexEvent) => {
      if (event.type !== 'rows') return;
      if (event.dataset === 'indices.delay') void drawDay().catch(console.error);
      // A past moment's ranking does not move.
      if (event.dataset === 'indices.link_travel' && !at) void drawRanking().catch(console.error);
    });

    void (async () => {
      const net = await network(api);
      panel = linkPanel(api, net);
      panelSlot.append(panel.node);
      await Promise.all([drawDay(), drawRanking()]);
      const link = Number(ctx.params.get('link'));
      // The panel beside the ranking is never empty: the link asked for, else the worst one.
      const worst = ranking(delays)[0];
      if (ctx.params.has('link') && Number.isInteger(link)) await panel.show(link, delays, rankLabel);
      else if (worst) await panel.show(worst.link_id, delays, rankLabel);
      else panelSlot.append(el('p', { class: 'muted', id: 'link-none' }, t('traffic.pick')));
      root.dataset.ready = 'true';
    })().catch((e) => root.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`)));

    return () => {
      unsubscribe();
      panel?.dispose();
      day.dispose();
    };
  },
};

export default page;
