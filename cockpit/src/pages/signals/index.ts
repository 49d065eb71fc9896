// Signals: the live controller's decisions on the map (each light coloured by why it last
// changed: demand, a movement waiting too long, an ambulance), a chosen light's phase
// timeline, and the emergency runs (一键护航) in progress with their ETA and stops.
//
// The network comes from GET /api/v1/signals/network (only while the signal scene runs);
// decisions from signals.decisions (SQL for the state at opening, then the event stream's
// rows), runs from the stream's `emergency` events and signals.emergency_runs.

import * as maplibregl from 'maplibre-gl';
import { ApiError } from '../../api';
import { el, hhmm, int } from '../../format';
import { t } from '../../i18n';
import type { IndexEvent } from '../../live';
import type { Context, Page } from '../../page';

const PURPOSE = 'cockpit: signals';
/** How far back the timeline looks, in data seconds. */
const TIMELINE_S = 300;
const PHASE_COLORS = ['#60a5fa', '#34d399', '#f472b6', '#fbbf24', '#a78bfa', '#22d3ee', '#fb923c', '#94a3b8'];

export interface Decision {
  ts: string;
  intersection: string;
  phase: number;
  state: string;
  reason: string;
}

interface SignalMap {
  georeferenced: boolean;
  bounds: [[number, number], [number, number]] | null;
  edges: GeoJSON.FeatureCollection<GeoJSON.LineString, { edge: string }>;
  lights: GeoJSON.FeatureCollection<GeoJSON.Point, { intersection: string; links: number }>;
}

interface Run {
  run_id: string;
  state: 'driving' | 'arrived';
  ts: string;
  edge?: string;
  next_light?: string | null;
  eta_s?: number | null;
  stops: number;
  travel_s?: number;
}

/** A timestamp as milliseconds: SQL and the event stream write them differently. */
const ms = (ts: string): number => Date.parse(ts);

/** Why a light changed, in three kinds the map colours. */
export function reasonKind(reason: string): 'emergency' | 'starvation' | 'demand' {
  if (reason.startsWith('emergency vehicle')) return 'emergency';
  if (reason.startsWith('starvation')) return 'starvation';
  return 'demand';
}

const KIND_COLOR = { demand: '#2fbf71', starvation: '#f2c14e', emergency: '#e03e3e' };

/** A signal state (one character per link) as coloured letters. */
function stateChips(state: string): HTMLElement {
  const colour: Record<string, string> = { G: '#2fbf71', g: '#86efac', y: '#f2c14e', Y: '#f2c14e', r: '#e03e3e', s: '#e03e3e', o: '#94a3b8', O: '#94a3b8' };
  return el('span', { class: 'signal-state', 'data-state': state }, ...[...state].map((c) => el('b', { style: `color:${colour[c] ?? '#cbd5e1'}` }, c)));
}

const page: Page = {
  id: 'signals',
  label: 'nav.signals',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const status = el('p', { class: 'muted', id: 'signals-status' });
    const mapNode = el('div', { class: 'map-wrap' });
    const legend = el(
      'p',
      { class: 'muted signals-legend' },
      ...(['demand', 'starvation', 'emergency'] as const).flatMap((k) => [el('span', { class: 'dot', style: `background:${KIND_COLOR[k]}` }), ` ${t(`signals.kind.${k}`)}  `]),
    );
    const detail = el('section', { class: 'card', id: 'signals-light' }, el('h2', {}, t('signals.light')), el('p', { class: 'muted' }, t('signals.pick')));
    const runsBody = el('tbody');
    const runs = el(
      'section',
      { class: 'card wide', id: 'signals-runs' },
      el('h2', {}, t('signals.runs')),
      el(
        'table',
        { class: 'grid' },
        el(
          'thead',
          {},
          el('tr', {}, ...['signals.run', 'signals.run_state', 'signals.edge', 'signals.next_light', 'signals.eta', 'signals.stops', 'signals.at'].map((k) => el('th', {}, t(k)))),
        ),
        runsBody,
      ),
    );
    root.append(
      el('div', { class: 'traffic' }, el('section', { class: 'card signals-map' }, el('h2', {}, t('signals.title')), status, mapNode, legend), detail, runs),
    );
    let map: maplibregl.Map | null = null;
    let unsubscribe = () => {};
    let closed = false;
    const latest = new Map<string, Decision>();
    const byRun = new Map<string, Run>();
    let chosen: string | null = null;
    let timeline: Decision[] = [];
    let edges: SignalMap['edges'] | null = null;

    const colourLight = (d: Decision) => {
      if (!map?.getSource('lights')) return;
      map.setFeatureState({ source: 'lights', id: d.intersection }, { kind: reasonKind(d.reason) });
    };

    const drawDetail = () => {
      if (!chosen) return;
      const d = latest.get(chosen);
      const head = el('h2', {}, `${t('signals.light')} ${chosen}`);
      if (!d) {
        detail.replaceChildren(head, el('p', { class: 'muted' }, t('signals.no_decision')));
        return;
      }
      // The timeline: one bar per decision until the next (or now), coloured by phase; an
      // ambulance's green outlined red.
      // "Now" is the data's clock: the newest decision of any light.
      const now = Math.max(...[...latest.values()].map((x) => ms(x.ts)));
      const from = now - TIMELINE_S * 1000;
      const shown = timeline.filter((_, i) => i === timeline.length - 1 || ms(timeline[i + 1].ts) > from);
      const width = 600;
      const x = (ms: number) => ((Math.max(ms, from) - from) / (now - from || 1)) * width;
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('viewBox', `0 0 ${width} 46`);
      svg.setAttribute('class', 'phase-timeline');
      svg.dataset.segments = String(shown.length);
      shown.forEach((s, i) => {
        const start = ms(s.ts);
        const stop = i + 1 < shown.length ? ms(shown[i + 1].ts) : now;
        const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
        rect.setAttribute('x', String(x(start)));
        rect.setAttribute('y', '4');
        rect.setAttribute('width', String(Math.max(1, x(stop) - x(start))));
        rect.setAttribute('height', '24');
        rect.setAttribute('fill', PHASE_COLORS[s.phase % PHASE_COLORS.length]);
        if (reasonKind(s.reason) === 'emergency') {
          rect.setAttribute('stroke', KIND_COLOR.emergency);
          rect.setAttribute('stroke-width', '3');
        }
        rect.dataset.ts = s.ts;
        rect.dataset.phase = String(s.phase);
        const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
        title.textContent = `${hhmm(s.ts)} · ${t('signals.phase')} ${s.phase} · ${s.reason}`;
        rect.append(title);
        svg.append(rect);
      });
      for (const [frac, anchor] of [
        [0, 'start'],
        [1, 'end'],
      ] as const) {
        const label = document.createElementNS('http://www.w3.org/2000/svg', 'text');
        label.setAttribute('x', String(frac * width));
        label.setAttribute('y', '42');
        label.setAttribute('text-anchor', anchor);
        label.setAttribute('fill', '#94a3b8');
        label.setAttribute('font-size', '11');
        label.textContent = hhmm(new Date(from + frac * (now - from)).toISOString());
        svg.append(label);
      }
      detail.replaceChildren(
        head,
        el(
          'dl',
          { class: 'light-now', 'data-intersection': chosen, 'data-phase': String(d.phase), 'data-ts': d.ts, 'data-kind': reasonKind(d.reason) },
          el('dt', {}, t('signals.phase')),
          el('dd', {}, String(d.phase)),
          el('dt', {}, t('signals.state')),
          el('dd', {}, stateChips(d.state)),
          el('dt', {}, t('signals.reason')),
          el('dd', {}, d.reason),
          el('dt', {}, t('signals.since')),
          el('dd', {}, hhmm(d.ts)),
        ),
        el('h3', {}, t('signals.timeline')),
        svg,
      );
    };

    const choose = async (id: string) => {
      if (map?.getSource('lights')) {
        if (chosen) map.setFeatureState({ source: 'lights', id: chosen }, { chosen: false });
        map.setFeatureState({ source: 'lights', id }, { chosen: true });
      }
      chosen = id;
      const rows = await api.sql<Decision>(
        `SELECT ts, intersection, phase, state, reason FROM signals.decisions
          WHERE intersection = '${id.replace(/'/g, "''")}'
            AND ts >= (SELECT max(ts) FROM signals.decisions) - INTERVAL '${TIMELINE_S} seconds'
          ORDER BY ts`,
        PURPOSE,
      );
      if (chosen !== id) return;
      // Rows that arrived on the stream while the query ran stay (no duplicate by time).
      const seen = new Set(rows.map((r) => ms(r.ts)));
      timeline = [...rows.map((r) => ({ ...r, phase: Number(r.phase) })), ...timeline.filter((r) => r.intersection === id && !seen.has(ms(r.ts)))].sort((a, b) => ms(a.ts) - ms(b.ts));
      const last = timeline[timeline.length - 1];
      if (last && (!latest.get(id) || ms(latest.get(id)!.ts) <= ms(last.ts))) latest.set(id, last);
      drawDetail();
      root.dataset.chosen = id;
    };

    const drawRuns = () => {
      const ordered = [...byRun.values()].sort((a, b) => (a.state === b.state ? ms(b.ts) - ms(a.ts) : a.state === 'driving' ? -1 : 1));
      runsBody.replaceChildren(
        ...(ordered.length === 0
          ? [el('tr', {}, el('td', { colspan: '7', class: 'muted' }, t('signals.no_runs')))]
          : ordered.slice(0, 12).map((r) =>
              el(
                'tr',
                { 'data-run': r.run_id, 'data-state': r.state, 'data-stops': String(r.stops), ...(r.eta_s != null ? { 'data-eta': String(r.eta_s) } : {}) },
                el('td', {}, r.run_id),
                el('td', {}, t(`signals.run.${r.state}`)),
                el('td', {}, r.edge ?? '—'),
                el('td', {}, r.next_light ?? '—'),
                el('td', { class: 'num' }, r.state === 'driving' && r.eta_s != null ? `${int(r.eta_s)} s` : r.travel_s != null ? `${t('signals.took')} ${int(r.travel_s)} s` : '—'),
                el('td', { class: 'num' }, int(r.stops)),
                el('td', {}, hhmm(r.ts)),
              ),
            )),
      );
      root.dataset.runsDriving = String(ordered.filter((r) => r.state === 'driving').length);
      // The ambulances on the map, at the middle of the road they are on.
      const src = map?.getSource('ambulances') as maplibregl.GeoJSONSource | undefined;
      if (!src || !edges) return;
      const mid = new Map(edges.features.map((f) => [f.properties.edge, f.geometry.coordinates[Math.floor(f.geometry.coordinates.length / 2)]]));
      const driving = ordered.filter((r) => r.state === 'driving' && r.edge && mid.has(r.edge));
      root.dataset.ambulancesShown = String(driving.length);
      src.setData({
        type: 'FeatureCollection',
        features: driving.map((r) => ({ type: 'Feature', properties: { run: r.run_id }, geometry: { type: 'Point', coordinates: mid.get(r.edge!)! } })),
      });
    };

    const onEvent = (event: IndexEvent) => {
      if (event.type === 'rows' && event.dataset === 'signals.decisions') {
        for (const raw of event.rows) {
          const d = { ...(raw as unknown as Decision), phase: Number(raw.phase) };
          const was = latest.get(d.intersection);
          if (!was || ms(was.ts) <= ms(d.ts)) latest.set(d.intersection, d);
          colourLight(latest.get(d.intersection)!);
          if (d.intersection === chosen) timeline.push(d);
        }
        if (chosen) {
          const cut = ms(latest.get(chosen)?.ts ?? '') - 2 * TIMELINE_S * 1000;
          timeline = timeline.filter((x) => ms(x.ts) >= cut);
          drawDetail();
        }
        status.dataset.decisions = String(latest.size);
      } else if (event.type === 'emergency') {
        const was = byRun.get(event.run_id);
        const arrived = event.state === 'arrived';
        byRun.set(event.run_id, {
          ...was,
          ...event,
          ...(arrived ? { edge: undefined, next_light: null, eta_s: null } : {}),
          stops: Number(event.stops ?? was?.stops ?? 0),
        } as Run);
        drawRuns();
      }
    };

    void (async () => {
      let net: SignalMap;
      try {
        net = await api.get<SignalMap>('/api/v1/signals/network');
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        status.textContent = `${t('signals.idle')} ${e.message}`;
        status.id = 'signals-idle';
        runs.remove();
        detail.remove();
        mapNode.remove();
        legend.remove();
        root.dataset.ready = 'true';
        return;
      }
      if (closed) return;
      edges = net.edges;
      status.textContent = `${int(net.lights.features.length)} ${t('signals.lights')} · ${net.georeferenced ? t('signals.geo') : t('signals.diagram')}`;
      status.dataset.lights = String(net.lights.features.length);
      status.dataset.georeferenced = String(net.georeferenced);
      map = new maplibregl.Map({
        container: mapNode,
        style: { version: 8, sources: {}, layers: [] },
        bounds: net.bounds ?? [
          [-0.01, -0.01],
          [0.01, 0.01],
        ],
        fitBoundsOptions: { padding: 30 },
        attributionControl: false,
        dragRotate: false,
        pitchWithRotate: false,
      });
      const m = map;
      // For the browser test: the map, to find where a light is drawn.
      (window as unknown as { cockpit: unknown }).cockpit = { map: m, page: 'signals' };
      m.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
      await new Promise<void>((r) => m.on('load', () => r()));
      if (closed) return;
      m.addSource('edges', { type: 'geojson', data: net.edges });
      m.addSource('lights', { type: 'geojson', data: net.lights, promoteId: 'intersection' });
      m.addSource('ambulances', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
      m.addLayer({ id: 'edges', type: 'line', source: 'edges', paint: { 'line-color': '#64748b', 'line-width': 1.5 } });
      m.addLayer({
        id: 'lights',
        type: 'circle',
        source: 'lights',
        paint: {
          'circle-radius': ['case', ['boolean', ['feature-state', 'chosen'], false], 10, 6],
          'circle-color': ['match', ['coalesce', ['feature-state', 'kind'], 'none'], 'demand', KIND_COLOR.demand, 'starvation', KIND_COLOR.starvation, 'emergency', KIND_COLOR.emergency, '#4b5563'],
          'circle-stroke-color': '#e2e8f0',
          'circle-stroke-width': ['case', ['boolean', ['feature-state', 'chosen'], false], 2, 0.5],
        },
      });
      m.addLayer({ id: 'ambulances', type: 'circle', source: 'ambulances', paint: { 'circle-radius': 7, 'circle-color': '#ffffff', 'circle-stroke-color': KIND_COLOR.emergency, 'circle-stroke-width': 3 } });
      m.on('click', 'lights', (e) => {
        const id = e.features?.[0]?.properties?.intersection;
        if (typeof id === 'string') void choose(id).catch(fail);
      });
      m.on('mouseenter', 'lights', () => (m.getCanvas().style.cursor = 'pointer'));
      m.on('mouseleave', 'lights', () => (m.getCanvas().style.cursor = ''));
      // Listen first, then read what is stored: nothing falls between the two.
      unsubscribe = ctx.live.on(onEvent);
      const [now, finished] = await Promise.all([
        api.sql<Decision>(
          `SELECT d.ts, d.intersection, d.phase, d.state, d.reason FROM signals.decisions d
             JOIN (SELECT intersection, max(ts) AS ts FROM signals.decisions GROUP BY intersection) m
               ON d.intersection = m.intersection AND d.ts = m.ts`,
          PURPOSE,
        ),
        api.sql<{ run_id: string; arrived: string; travel_s: number; stops: number; route: string }>(
          'SELECT run_id, arrived, travel_s, stops, route FROM signals.emergency_runs ORDER BY arrived DESC LIMIT 12',
          PURPOSE,
        ),
      ]);
      if (closed) return;
      for (const d of now) {
        const was = latest.get(d.intersection);
        if (!was || ms(was.ts) < ms(d.ts)) latest.set(d.intersection, { ...d, phase: Number(d.phase) });
      }
      for (const d of latest.values()) colourLight(d);
      for (const r of finished) {
        if (!byRun.has(r.run_id)) byRun.set(r.run_id, { run_id: r.run_id, state: 'arrived', ts: r.arrived, stops: Number(r.stops), travel_s: Number(r.travel_s) });
      }
      drawRuns();
      status.dataset.decisions = String(latest.size);
      const wanted = ctx.params.get('light');
      if (wanted) await choose(wanted);
      root.dataset.ready = 'true';
    })().catch(fail);

    function fail(e: unknown) {
      root.append(el('div', { class: 'error' }, `${t('error')}: ${e instanceof Error ? e.message : String(e)}`));
    }

    return () => {
      closed = true;
      unsubscribe();
      map?.remove();
    };
  },
};

export default page;
