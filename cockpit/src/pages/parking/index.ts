// Parking: choose a place (a hospital) and when you will be there; lots within 2.5 km come
// ranked by the chance of a free berth on arrival, with the walk and the price, in a table
// and on the map beside it (a person answers "where do I park?" by looking). Below, how full
// the place's own pool was over the day.

import { AXIS, chart } from '../../charts';
import { el, hhmm, int } from '../../format';
import { t } from '../../i18n';
import { cityMap, htmlMarker, type MapLibreMap, upsertGeoJson } from '../../map';
import { network } from '../../network';
import type { Context, Page } from '../../page';
import { type GuideLot, hasParking, type LotRow, lots as parkingLots, type ParkingRow, yuan } from '../../parking';

const PURPOSE = 'cockpit: parking guidance';
const RADIUS_M = 2500;

/** The colour of a chance of a free berth, as the table's chips show it. */
function chanceColor(chance: number): string {
  return chance >= 0.9 ? '#2fbf71' : chance >= 0.5 ? '#f2c14e' : '#e03e3e';
}

/** A circle of `radius_m` around a point, as a polygon (a flat-earth approximation is
 * exact enough at a few kilometres). */
function circle(lon: number, lat: number, radius_m: number): GeoJSON.Feature<GeoJSON.Polygon> {
  const dLat = radius_m / 111_320;
  const dLon = dLat / Math.cos((lat * Math.PI) / 180);
  const ring: [number, number][] = [];
  for (let i = 0; i <= 64; i++) {
    const a = (i / 64) * 2 * Math.PI;
    ring.push([lon + dLon * Math.cos(a), lat + dLat * Math.sin(a)]);
  }
  return { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [ring] } };
}

/** The lots of one answer on the map: the place, the 2.5 km it searched, a dashed walk from
 * each lot, and a marker per lot with its rank and the berths expected free on arrival. */
function drawGuide(map: MapLibreMap, place: LotRow, lots: GuideLot[], markers: Map<number, HTMLElement>, pick: (lot: number) => void) {
  const at: [number, number] = [place.loc.lon, place.loc.lat];
  upsertGeoJson(map, 'reach', { type: 'FeatureCollection', features: [circle(at[0], at[1], RADIUS_M)] }, {
    type: 'line',
    paint: { 'line-color': '#94a3b8', 'line-width': 1, 'line-dasharray': [2, 2] },
  });
  upsertGeoJson(
    map,
    'walks',
    {
      type: 'FeatureCollection',
      features: lots.map((g) => ({
        type: 'Feature',
        properties: { color: chanceColor(g.chance) },
        geometry: { type: 'LineString', coordinates: [[g.loc.lon, g.loc.lat], at] },
      })),
    },
    { type: 'line', paint: { 'line-color': ['get', 'color'], 'line-width': 1.5, 'line-opacity': 0.7, 'line-dasharray': [1, 1.5] } },
  );
  const placeNode = el('div', { class: 'place-marker', title: place.name }, 'H');
  const shown = [htmlMarker(map, placeNode, at)];
  lots.forEach((g, i) => {
    const node = el(
      'div',
      {
        class: 'lot-marker',
        'data-lot': String(g.lot),
        style: `background:${chanceColor(g.chance)}`,
        title: `${g.name}: ${int(g.predicted_free)} / ${int(g.capacity)} · ${int(g.walk_m)} m · ${Math.round(g.chance * 100)}%`,
      },
      el('b', {}, String(i + 1)),
      ` ${int(g.predicted_free)}`,
    );
    node.addEventListener('click', () => pick(g.lot));
    markers.set(g.lot, node);
    shown.push(htmlMarker(map, node, [g.loc.lon, g.loc.lat]));
  });
  // Framed on the place and the lots listed (at least 400 m around the place), so nearby
  // lots' markers stand apart; the 2.5 km searched is the dashed ring.
  const around = circle(at[0], at[1], 400).geometry.coordinates[0];
  const points = [...around, ...lots.map((g): [number, number] => [g.loc.lon, g.loc.lat])];
  const lons = points.map((p) => p[0]);
  const lats = points.map((p) => p[1]);
  map.fitBounds(
    [
      [Math.min(...lons), Math.min(...lats)],
      [Math.max(...lons), Math.max(...lats)],
    ],
    { padding: 40, animate: false },
  );
  return () => shown.forEach((m) => m.remove());
}

const page: Page = {
  id: 'parking',
  label: 'nav.parking',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const body = el('div', { class: 'card' }, el('h2', {}, t('parking.title')));
    const mapNode = el('div', { class: 'map', id: 'parking-map' });
    const mapCard = el('div', { class: 'card parking-map' }, el('h2', {}, t('parking.map')), el('div', { class: 'map-wrap' }, mapNode));
    const dayCard = el('div', { class: 'card wide' }, el('h2', {}, t('parking.day')));
    const plot = el('div', { class: 'day-chart', id: 'pool-chart' });
    dayCard.append(plot);
    root.append(el('div', { class: 'parking traffic' }, body, mapCard, dayCard));
    const day = chart(plot);
    let map: ReturnType<typeof cityMap> | null = null;
    let clearGuide = () => {};

    void (async () => {
      if (!(await hasParking(api))) {
        body.classList.add('wide');
        body.append(el('p', { class: 'muted', id: 'parking-none' }, t('parking.none')));
        dayCard.remove();
        mapCard.remove();
        root.dataset.ready = 'true';
        return;
      }
      const [all, net] = await Promise.all([parkingLots(api, PURPOSE), network(api)]);
      map = cityMap(mapNode, net);
      (window as unknown as { cockpit: unknown }).cockpit = { map: map.map, page: 'parking' };
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
          { class: 'grid ranking', id: 'guide' },
          el(
            'thead',
            {},
            el('tr', {}, ...['#', t('parking.lot'), t('parking.kind'), t('parking.walk'), t('parking.free_now'), t('parking.predicted'), t('parking.chance'), t('parking.price')].map((h) => el('th', {}, h))),
          ),
          tbody,
        ),
      );
      // A row and its marker light up together, whichever the pointer is on.
      const markers = new Map<number, HTMLElement>();
      const highlight = (lot: number | null) => {
        for (const [id, node] of markers) node.classList.toggle('active', id === lot);
        for (const row of tbody.querySelectorAll<HTMLElement>('tr[data-lot]')) row.classList.toggle('active', Number(row.dataset.lot) === lot);
      };
      const pick = (lot: number) => {
        highlight(lot);
        tbody.querySelector(`tr[data-lot="${lot}"]`)?.scrollIntoView({ block: 'nearest' });
      };
      const draw = async () => {
        const lot = all.find((l) => String(l.lot_id) === place.value)!;
        const { lots } = await api.get<{ lots: GuideLot[] }>(
          `/api/v1/parking/guide?lat=${lot.loc.lat}&lon=${lot.loc.lon}&radius_m=${RADIUS_M}&arrive_in_min=${arrive.value}&limit=12`,
        );
        tbody.replaceChildren(
          ...lots.map((g, i) => {
            const row = el(
              'tr',
              { 'data-lot': String(g.lot) },
              el('td', {}, String(i + 1)),
              el('td', {}, g.name),
              el('td', {}, t(`kind.${g.kind}`)),
              el('td', {}, `${int(g.walk_m)} m`),
              el('td', {}, `${int(g.free_now)} / ${int(g.capacity)}`),
              el('td', {}, int(g.predicted_free)),
              el('td', {}, el('span', { class: 'di-chip', style: `background:${chanceColor(g.chance)}` }, `${Math.round(g.chance * 100)}%`)),
              el('td', {}, yuan(g.price_2h)),
            );
            row.addEventListener('mouseenter', () => highlight(g.lot));
            row.addEventListener('mouseleave', () => highlight(null));
            return row;
          }),
        );
        if (map) {
          await map.ready;
          clearGuide();
          markers.clear();
          clearGuide = drawGuide(map.map, lot, lots, markers, pick);
          mapNode.dataset.lots = String(lots.length);
        }
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
        if (map) {
          const m = map.map;
          await new Promise<void>((resolve) => (m.loaded() ? resolve() : m.once('idle', () => resolve())));
        }
        root.dataset.ready = 'true';
      };
      place.addEventListener('change', () => void draw());
      arrive.addEventListener('change', () => void draw());
      await draw();
    })().catch((e) => body.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`)));
    return () => {
      clearGuide();
      day.dispose();
      map?.destroy();
    };
  },
};

export default page;
