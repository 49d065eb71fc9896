// Parking: choose a place (a hospital) and when you will be there; lots within 2.5 km come
// ranked by the chance of a free berth on arrival, with the walk and the price. Beside it,
// how full the place's own pool was over the day.

import { AXIS, chart } from '../../charts';
import { el, hhmm, int } from '../../format';
import { t } from '../../i18n';
import type { Context, Page } from '../../page';
import { type GuideLot, hasParking, lots as parkingLots, type ParkingRow, yuan } from '../../parking';

const PURPOSE = 'cockpit: parking guidance';

const page: Page = {
  id: 'parking',
  label: 'nav.parking',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const body = el('div', { class: 'card wide' }, el('h2', {}, t('parking.title')));
    const dayCard = el('div', { class: 'card wide' }, el('h2', {}, t('parking.day')));
    const plot = el('div', { class: 'day-chart', id: 'pool-chart' });
    dayCard.append(plot);
    root.append(el('div', { class: 'parking traffic' }, body, dayCard));
    const day = chart(plot);

    void (async () => {
      if (!(await hasParking(api))) {
        body.append(el('p', { class: 'muted', id: 'parking-none' }, t('parking.none')));
        dayCard.remove();
        root.dataset.ready = 'true';
        return;
      }
      const all = await parkingLots(api, PURPOSE);
      const places = all.filter((l) => l.kind === 'hospital_pool');
      const place = el('select', { id: 'place' }, ...places.map((p) => el('option', { value: String(p.lot_id) }, p.name)));
      const arrive = el(
        'select',
        { id: 'arrive' },
        ...[0, 15, 30, 60].map((m) => el('option', { value: String(m) }, m === 0 ? t('parking.now') : `${m} ${t('parking.minutes')}`)),
      );
      const chosen = Number(ctx.params.get('place'));
      if (places.some((p) => p.lot_id === chosen)) place.value = String(chosen);
      const tbody = el('tbody');
      body.append(
        el('div', { class: 'time-bar' }, el('label', { for: 'place' }, t('parking.place')), place, el('label', { for: 'arrive' }, t('parking.arrive')), arrive),
        el('p', { class: 'muted' }, t('parking.hint')),
        el(
          'table',
          { class: 'grid', id: 'guide' },
          el(
            'thead',
            {},
            el('tr', {}, ...['#', t('parking.lot'), t('parking.kind'), t('parking.walk'), t('parking.free_now'), t('parking.predicted'), t('parking.chance'), t('parking.price')].map((h) => el('th', {}, h))),
          ),
          tbody,
        ),
      );
      const draw = async () => {
        const lot = all.find((l) => String(l.lot_id) === place.value)!;
        const { lots } = await api.get<{ lots: GuideLot[] }>(
          `/api/v1/parking/guide?lat=${lot.loc.lat}&lon=${lot.loc.lon}&radius_m=2500&arrive_in_min=${arrive.value}&limit=12`,
        );
        tbody.replaceChildren(
          ...lots.map((g, i) =>
            el(
              'tr',
              { 'data-lot': String(g.lot) },
              el('td', {}, String(i + 1)),
              el('td', {}, g.name),
              el('td', {}, t(`kind.${g.kind}`)),
              el('td', {}, `${int(g.walk_m)} m`),
              el('td', {}, `${int(g.free_now)} / ${int(g.capacity)}`),
              el('td', {}, int(g.predicted_free)),
              el('td', {}, el('span', { class: 'di-chip', style: `background:${g.chance >= 0.9 ? '#2fbf71' : g.chance >= 0.5 ? '#f2c14e' : '#e03e3e'}` }, `${Math.round(g.chance * 100)}%`)),
              el('td', {}, yuan(g.price_2h)),
            ),
          ),
        );
        const rows = await api.sql<ParkingRow>(
          `SELECT at, parking_index, free FROM parking.index
            WHERE scope = 'lot' AND id = '${lot.lot_id}'
              AND at > (SELECT max(at) FROM parking.index) - INTERVAL '24 hours'
            ORDER BY at`,
          PURPOSE,
        );
        plot.dataset.points = String(rows.length);
        day.chart.setOption(
          {
            animation: false,
            grid: { left: 48, right: 24, top: 24, bottom: 32 },
            tooltip: { trigger: 'axis' },
            xAxis: { type: 'category', data: rows.map((r) => hhmm(r.at)), ...AXIS },
            yAxis: { type: 'value', min: 0, max: 100, name: '%', ...AXIS },
            series: [{ name: lot.name, type: 'line', showSymbol: false, areaStyle: { opacity: 0.2 }, data: rows.map((r) => Math.round(Number(r.parking_index) * 1000) / 10) }],
          },
          { notMerge: true },
        );
        root.dataset.ready = 'true';
      };
      place.addEventListener('change', () => void draw());
      arrive.addEventListener('change', () => void draw());
      await draw();
    })().catch((e) => body.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`)));
    return () => day.dispose();
  },
};

export default page;
