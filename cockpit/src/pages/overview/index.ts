// Overview: the map with links coloured by delay index, the headline indices with their
// day as sparklines, and the congestion ranking; all following the live feed.

import { cityMap, upsertGeoJson } from '../../map';
import { diColor, DI_STEPS, el, fixed, hhmm, int, dateTime, NO_DATA_COLOR } from '../../format';
import { lang, t } from '../../i18n';
import { fillRanking, linkPanel, rankingTable } from '../../linkpanel';
import { network } from '../../network';
import type { Context, Page } from '../../page';
import { sparkline } from '../../sparkline';
import { atParam, delaySeries, type LinkDelay, linkDelays, timeBar } from '../../traffic';
import type { IndexEvent } from '../../live';
import { cityParking, hasParking, lots as parkingLots, lotsNow } from '../../parking';
import { alertFeatures, alertList, type AlertRow, hasAlerts, openAlerts, openedInDay } from '../../alerts';

/** Parking index colours: plenty, filling, nearly full. */
function parkingColor(index: number): string {
  return index >= 0.9 ? '#e03e3e' : index >= 0.7 ? '#f08a24' : '#2fbf71';
}

const PURPOSE = 'cockpit: overview';

function kpi(id: string, label: string) {
  const value = el('div', { class: 'kpi-value' }, '…');
  const note = el('div', { class: 'kpi-note' });
  const spark = el('div', { class: 'kpi-spark' });
  const node = el('div', { class: 'kpi', 'data-kpi': id }, el('div', { class: 'kpi-label' }, t(label)), value, spark, note);
  return { node, value, note, spark };
}

function legend(): HTMLElement {
  const items = DI_STEPS.map((s) =>
    el('span', { class: 'legend-item' }, el('i', { style: `background:${s.color}` }), lang() === 'zh' ? s.zh : s.en),
  );
  items.push(el('span', { class: 'legend-item' }, el('i', { style: `background:${NO_DATA_COLOR}` }), t('map.nodata')));
  return el('div', { class: 'legend' }, el('strong', {}, t('map.legend')), ...items);
}

const page: Page = {
  id: 'overview',
  label: 'nav.overview',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const mapNode = el('div', { class: 'map', id: 'map' });
    const vehicles = kpi('vehicles_today', 'kpi.vehicles_today');
    const onRoad = kpi('on_road', 'kpi.on_road');
    const delay = kpi('delay', 'kpi.delay');
    const parking = kpi('parking', 'kpi.parking');
    parking.value.textContent = '…';
    const { table: rankingEl, body: rankingBody } = rankingTable();
    const alerts = el('div', { class: 'alerts-box' });
    // Live by default; `?at=` looks back at a moment (the morning peak, an incident).
    const at = atParam(ctx.params);
    const side = el(
      'aside',
      { class: 'side' },
      timeBar(ctx, 'overview', at),
      el('div', { class: 'kpis' }, vehicles.node, onRoad.node, delay.node, parking.node),
      alerts,
      el('h2', {}, t('ranking.title')),
      rankingEl,
    );
    const mapWrap = el('div', { class: 'map-wrap' }, mapNode, legend());
    root.append(el('div', { class: 'overview' }, mapWrap, side));

    const abort = new AbortController();
    let delays: LinkDelay[] = [];
    let onRoadSeries: number[] = [];
    let delayValues: number[] = [];
    let map: ReturnType<typeof cityMap> | null = null;
    let panel: ReturnType<typeof linkPanel> | null = null;

    const showLive = (live: { at: string; on_road: number; vehicles_today: number }) => {
      onRoad.value.textContent = int(live.on_road);
      onRoad.note.textContent = `${t('kpi.at')} ${dateTime(live.at)}`;
      vehicles.value.textContent = int(live.vehicles_today);
      vehicles.note.textContent = `${t('kpi.at')} ${dateTime(live.at)}`;
    };

    const drawRanking = () => {
      fillRanking(rankingBody, delays, 10, (id) => void panel?.show(id, delays));
    };

    const refreshLinks = async () => {
      delays = await linkDelays(api, PURPOSE, at);
      map?.setDelays(new Map(delays.map((d) => [d.link_id, d.di])));
      drawRanking();
      root.dataset.linksColoured = String(delays.length);
    };

    const refreshDelay = async () => {
      const series = await delaySeries(api, PURPOSE, true);
      delayValues = series.map((p) => Number(p.delay_index));
      const last = at ? series.filter((p) => new Date(p.bin) <= at).at(-1) : series.at(-1);
      delay.value.textContent = last ? fixed(Number(last.delay_index)) : t('kpi.no_data');
      delay.value.style.color = last ? diColor(Number(last.delay_index)) : '';
      delay.note.textContent = last ? `${t('kpi.at')} ${hhmm(last.bin)}` : '';
      delay.spark.replaceChildren(sparkline(delayValues, '#f2c14e'));
    };

    const refreshOnRoad = async () => {
      const rows = await api.sql<{ at: string; vehicles: number }>(
        `SELECT at, vehicles FROM indices.on_road
          WHERE district = 'city' AND at > (SELECT max(at) FROM indices.on_road) - INTERVAL '24 hours'
          ORDER BY at`,
        PURPOSE,
      );
      onRoadSeries = rows.map((r) => Number(r.vehicles));
      onRoad.spark.replaceChildren(sparkline(onRoadSeries, '#60a5fa'));
      const shown = at ? rows.filter((r) => new Date(r.at) <= at).at(-1) : rows.at(-1);
      if ((at || !ctx.live.latest) && shown) {
        onRoad.value.textContent = int(shown.vehicles);
        onRoad.note.textContent = `${t('kpi.at')} ${dateTime(shown.at)}`;
      }
    };

    const refreshCensus = async () => {
      const hours = await api.sql<{ hour: string; vehicles: number }>(
        `SELECT hour, vehicles FROM indices.census_hourly
          WHERE hour > (SELECT max(hour) FROM indices.census_hourly) - INTERVAL '24 hours'
          ORDER BY hour`,
        PURPOSE,
      );
      let spark = hours.map((h) => Number(h.vehicles));
      if (!spark.length) {
        // Hours are final only when their day closes; until then, the day so far.
        const sofar = await api.sql<{ vehicles: number }>(
          `SELECT vehicles FROM indices.census_so_far
            WHERE day = (SELECT max(day) FROM indices.census_so_far) ORDER BY at`,
          PURPOSE,
        );
        spark = sofar.map((r) => Number(r.vehicles));
      }
      vehicles.spark.replaceChildren(sparkline(spark, '#a78bfa'));
      if (at) {
        // The day's census as it stood then: corroborated vehicles of that day before `at`.
        const [row] = await api.sql<{ at: string; vehicles: number }>(
          `SELECT at, vehicles FROM indices.census_so_far
            WHERE at <= TIMESTAMP '${at.toISOString()}' ORDER BY at DESC LIMIT 1`,
          PURPOSE,
        );
        vehicles.value.textContent = row ? int(row.vehicles) : t('kpi.no_data');
        vehicles.note.textContent = row ? `${t('kpi.at')} ${dateTime(row.at)}` : '';
      } else if (!ctx.live.latest) {
        // A closed day's census; a day still open is known only to the live view.
        const days = await api.sql<{ day: string; vehicles: number }>(
          'SELECT day, vehicles FROM indices.census_daily ORDER BY day DESC LIMIT 1',
          PURPOSE,
        );
        // The live view may have arrived while the query ran; it is newer.
        if (!ctx.live.latest) {
          vehicles.value.textContent = days.length ? int(days[0].vehicles) : t('kpi.no_data');
          vehicles.note.textContent = days.length ? String(days[0].day) : '';
        }
      }
    };

    let parkingOn = false;
    const refreshParking = async () => {
      parkingOn = await hasParking(api);
      if (!parkingOn) {
        parking.value.textContent = '—';
        parking.note.textContent = t('kpi.parking_none');
        return;
      }
      const series = await cityParking(api, PURPOSE);
      const last = at ? series.filter((r) => new Date(r.at) <= at).at(-1) : series.at(-1);
      parking.value.textContent = last ? `${Math.round(Number(last.parking_index) * 100)}%` : t('kpi.no_data');
      parking.value.style.color = last ? parkingColor(Number(last.parking_index)) : '';
      parking.note.textContent = last ? `${t('kpi.parking_free')} ${int(last.free)} · ${hhmm(last.at)}` : '';
      parking.spark.replaceChildren(sparkline(series.map((r) => Number(r.parking_index)), '#34d399'));
      // Lots on the map, coloured by how full they are.
      const [all, now] = await Promise.all([parkingLots(api, PURPOSE), lotsNow(api, PURPOSE, at)]);
      if (!map) return;
      const m = map.map;
      await map.ready;
      const data: GeoJSON.FeatureCollection = {
        type: 'FeatureCollection',
        features: all.map((l) => ({
          type: 'Feature',
          id: Number(l.lot_id),
          properties: {
            lot_id: Number(l.lot_id),
            name: l.name,
            color: parkingColor(Number(now.get(Number(l.lot_id))?.parking_index ?? 0)),
            radius: 3 + Math.sqrt(Number(l.capacity)) / 3,
          },
          geometry: { type: 'Point', coordinates: [l.loc.lon, l.loc.lat] },
        })),
      };
      upsertGeoJson(m, 'lots', data, {
        type: 'circle',
        paint: {
          'circle-color': ['get', 'color'],
          'circle-radius': ['get', 'radius'],
          'circle-opacity': 0.85,
          'circle-stroke-color': '#0b1220',
          'circle-stroke-width': 1.5,
        },
      });
      root.dataset.lots = String(all.length);
    };

    // Alerts: the list beside the map and rings on it; a click goes to the place.
    const pickAlert = (a: AlertRow) => {
      if (map && a.loc) map.map.flyTo({ center: [a.loc.lon, a.loc.lat], zoom: Math.max(map.map.getZoom(), 14) });
      if (a.kind === 'congestion') void panel?.show(Number(a.subject_id), delays);
    };
    let alertsOn = false;
    const refreshAlerts = async () => {
      alertsOn = alertsOn || (await hasAlerts(api));
      if (!alertsOn) {
        alerts.replaceChildren(el('div', { class: 'alerts' }, el('div', { class: 'alerts-none', id: 'alerts-none' }, t('alerts.none'))));
        return;
      }
      const [open, day] = await Promise.all([openAlerts(api, PURPOSE, at), openedInDay(api, PURPOSE, at)]);
      alerts.replaceChildren(alertList(open, day, pickAlert));
      root.dataset.alerts = String(open.length);
      if (!map) return;
      const m = map.map;
      await map.ready;
      const data = alertFeatures(open);
      upsertGeoJson(m, 'alerts', data, {
        type: 'circle',
        paint: {
          'circle-radius': 11,
          'circle-color': 'rgba(0,0,0,0)',
          'circle-stroke-width': 3,
          'circle-stroke-color': ['match', ['get', 'kind'], 'lot_full', '#f08a24', '#e03e3e'],
        },
      });
      root.dataset.alertsDrawn = String(data.features.length);
    };

    let linkTimer: number | undefined;
    let alertTimer: number | undefined;
    let parkingTimer: number | undefined;
    let censusTimer: number | undefined;
    const unsubscribe = ctx.live.on((event: IndexEvent) => {
      if (at) return; // a past moment does not move
      if (event.type === 'live') {
        showLive(event.live);
      } else if (event.type !== 'rows') {
        return;
      } else if (event.dataset === 'indices.link_travel') {
        // Windows close in bursts; one query after the burst.
        clearTimeout(linkTimer);
        linkTimer = window.setTimeout(() => void refreshLinks().catch(console.error), 300);
      } else if (event.dataset === 'indices.delay') {
        void refreshDelay().catch(console.error);
      } else if (event.dataset === 'indices.on_road') {
        void refreshOnRoad().catch(console.error);
      } else if (event.dataset === 'parking.index') {
        clearTimeout(parkingTimer);
        parkingTimer = window.setTimeout(() => void refreshParking().catch(console.error), 300);
      } else if (event.dataset === 'alerts.events') {
        clearTimeout(alertTimer);
        alertTimer = window.setTimeout(() => void refreshAlerts().catch(console.error), 300);
      } else if (event.dataset === 'indices.census_hourly' || event.dataset === 'indices.census_so_far') {
        clearTimeout(censusTimer);
        censusTimer = window.setTimeout(() => void refreshCensus().catch(console.error), 300);
      }
    });
    if (ctx.live.latest && !at) showLive(ctx.live.latest);

    void (async () => {
      const net = await network(api);
      if (abort.signal.aborted) return;
      map = cityMap(mapNode, net);
      panel = linkPanel(api, net);
      mapWrap.append(panel.node);
      map.onLinkClick((id) => void panel?.show(id, delays));
      (window as unknown as { cockpit: unknown }).cockpit = { map: map.map, cityMap: map, linkAt: map.linkAt, network: net, page: 'overview' };
      await Promise.all([
        refreshLinks(),
        refreshDelay(),
        refreshOnRoad(),
        refreshCensus(),
        map.ready,
      ]);
      await refreshParking();
      await refreshAlerts();
      const params = ctx.params.get('link');
      if (params) void panel.show(Number(params), delays);
      map.map.once('idle', () => {
        root.dataset.ready = 'true';
        performance.mark('cockpit-map-ready');
      });
      map.map.triggerRepaint();
    })().catch((e) => {
      root.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`));
    });

    return () => {
      abort.abort();
      clearTimeout(linkTimer);
      clearTimeout(parkingTimer);
      clearTimeout(alertTimer);
      clearTimeout(censusTimer);
      unsubscribe();
      panel?.dispose();
      map?.destroy();
    };
  },
};

export default page;
