// Cockpits as files (数字驾驶舱): `#/cockpits` lists the cockpits the viewer's department may
// open; `#/cockpits?id=X` draws one from its definition. Every panel is fetched from
// GET /api/v1/cockpits/X/panels/P, which runs the panel's query as the viewer: a panel the
// viewer may not read comes back `denied` with the grant it needs, and says so here.

import { ApiError } from '../../api';
import { AXIS, chart } from '../../charts';
import { CITY_TZ, cityOffset, dateTime, el } from '../../format';
import { lang, t } from '../../i18n';
import { cityMap, upsertGeoJson } from '../../map';
import { network } from '../../network';
import type { Context, Page } from '../../page';
import { type Cockpit, type PanelDef, type PanelAnswer, LEVEL_COLOR, levelOf, numbers, rowLevel, write, text } from './model';
import { sparkline } from '../../sparkline';

interface Summary {
  id: string;
  department: string;
  title: { en: string; zh: string };
  purpose?: { en: string; zh: string } | null;
  panels: number;
}

const page: Page = {
  id: 'cockpits',
  label: 'nav.cockpits',
  mount(root: HTMLElement, ctx: Context) {
    const id = ctx.params.get('id');
    const cleanups: (() => void)[] = [];
    const fail = (e: unknown) => root.append(el('div', { class: 'error' }, `${t('error')}: ${e instanceof Error ? e.message : String(e)}`));
    if (!id) void list(root, ctx).catch(fail);
    else void show(root, ctx, id, cleanups).catch(fail);
    return () => cleanups.forEach((c) => c());
  },
};

async function list(root: HTMLElement, ctx: Context): Promise<void> {
  const { cockpits } = await ctx.api.get<{ cockpits: Summary[] }>('/api/v1/cockpits');
  const cards = cockpits.map((c) =>
    el(
      'a',
      { class: 'card cockpit-card', href: `#/cockpits?id=${encodeURIComponent(c.id)}`, 'data-cockpit': c.id },
      el('h2', {}, text(c.title)),
      el('p', { class: 'muted' }, c.purpose ? text(c.purpose) : ''),
      el('p', { class: 'muted' }, `${c.department} · ${c.panels} ${t('cockpits.panels')}`),
    ),
  );
  root.append(
    el('section', { class: 'card wide' }, el('h2', {}, t('cockpits.title')), el('p', { class: 'muted' }, t('cockpits.help'))),
    cockpits.length
      ? el('div', { class: 'cockpit-list', id: 'cockpit-list' }, ...cards)
      : el('p', { class: 'muted empty-state', id: 'cockpits-none' }, t('cockpits.none')),
  );
  root.dataset.count = String(cockpits.length);
  root.dataset.ready = 'true';
}

async function show(root: HTMLElement, ctx: Context, id: string, cleanups: (() => void)[]): Promise<void> {
  let cockpit: Cockpit;
  try {
    cockpit = await ctx.api.get<Cockpit>(`/api/v1/cockpits/${encodeURIComponent(id)}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    root.append(el('p', { class: 'muted empty-state', id: 'cockpit-missing' }, `${t('cockpits.missing')} (${id})`));
    root.dataset.ready = 'true';
    return;
  }
  const at = ctx.params.get('at');
  const asOf = el('span', { class: 'muted', id: 'cockpit-at' });
  root.append(
    el(
      'section',
      { class: 'card wide cockpit-head' },
      el('a', { href: '#/cockpits', class: 'muted' }, `← ${t('cockpits.all')}`),
      el('h2', { id: 'cockpit-title' }, text(cockpit.title)),
      cockpit.purpose ? el('p', { class: 'muted' }, text(cockpit.purpose)) : '',
      asOf,
    ),
  );
  // The daily briefing (城市日报) of the day shown, as this viewer may read it.
  const briefing = (format: 'pdf' | 'png') => {
    const when = asOf.dataset.at ? new Date(asOf.dataset.at) : new Date();
    const day = new Intl.DateTimeFormat('en-CA', { timeZone: CITY_TZ, year: 'numeric', month: '2-digit', day: '2-digit' }).format(when);
    const path = `/api/v1/cockpits/${encodeURIComponent(cockpit.id)}/briefing?day=${day}&format=${format}&lang=${lang()}`;
    void ctx.api.download(path, `briefing-${cockpit.id}-${day}.${format}`);
  };
  const buttons = el(
    'div',
    { class: 'briefing-buttons' },
    el('button', { type: 'button', class: 'ghost', id: 'briefing-pdf' }, `${t('cockpits.briefing')} (PDF)`),
    el('button', { type: 'button', class: 'ghost', id: 'briefing-png' }, `${t('cockpits.briefing')} (PNG)`),
  );
  buttons.children[0].addEventListener('click', () => briefing('pdf'));
  buttons.children[1].addEventListener('click', () => briefing('png'));
  root.querySelector('.cockpit-head')?.append(buttons);
  const grid = el('div', { class: 'cockpit-grid', id: 'cockpit-grid', 'data-cockpit': cockpit.id });
  root.append(grid);
  const drawn = cockpit.panel.map((p) => {
    const node = el('section', { class: `card panel panel-${p.kind}`, 'data-panel': p.id, 'data-kind': p.kind });
    node.style.gridColumn = `span ${p.width ?? (p.kind === 'kpi' ? 1 : 2)}`;
    node.append(el('h2', {}, text(p.title)));
    grid.append(node);
    // What this panel's drawing holds (a chart, a map), released when it is drawn again.
    const mine: (() => void)[] = [];
    panelCleanups.set(node, mine);
    cleanups.push(() => mine.splice(0).forEach((release) => release()));
    return draw(ctx, cockpit, p, node, at, mine, (when) => {
      asOf.textContent = `${t('kpi.at')} ${dateTime(when)}`;
      asOf.dataset.at = when;
    });
  });
  await Promise.all(drawn);
  // A cockpit on a wall screen stays live: unless the viewer pinned an instant, every panel
  // is asked again each minute (`&refresh=SECONDS`, at least 5, changes the pace). Maps keep
  // their view and only recolour.
  const every = Math.max(5, Number(ctx.params.get('refresh') ?? 60)) * 1000;
  if (!at) {
    let refreshes = 0;
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      const again = cockpit.panel.map((p) => {
        const node = grid.querySelector<HTMLElement>(`[data-panel="${p.id}"]`)!;
        return redraw(ctx, cockpit, p, node, (when) => {
          asOf.textContent = `${t('kpi.at')} ${dateTime(when)}`;
          asOf.dataset.at = when;
        });
      });
      void Promise.all(again).finally(() => {
        busy = false;
        grid.dataset.refreshed = String(++refreshes);
      });
    }, every);
    cleanups.push(() => clearInterval(timer));
  }
  root.dataset.ready = 'true';
}

/** What redraws a map panel's layer with new rows (maps are not rebuilt on refresh). */
const mapUpdaters = new WeakMap<HTMLElement, (rows: Record<string, unknown>[]) => void>();
/** What a panel's last drawing holds (charts) and must release before it is drawn again. */
const panelCleanups = new WeakMap<HTMLElement, (() => void)[]>();

async function redraw(
  ctx: Context,
  cockpit: Cockpit,
  p: PanelDef,
  node: HTMLElement,
  onAt: (at: string) => void,
): Promise<void> {
  const update = mapUpdaters.get(node);
  if (update) {
    try {
      const answer = await ctx.api.get<PanelAnswer>(`/api/v1/cockpits/${cockpit.id}/panels/${p.id}`);
      onAt(answer.at);
      if (answer.rows) update(answer.rows);
    } catch {
      /* the next refresh tries again; the layer shown stays */
    }
    return;
  }
  const mine = panelCleanups.get(node) ?? [];
  mine.splice(0).forEach((release) => release());
  const title = node.querySelector('h2');
  node.replaceChildren(...(title ? [title] : []));
  for (const key of ['rows', 'value', 'level', 'denied', 'error']) delete node.dataset[key];
  await draw(ctx, cockpit, p, node, null, mine, onAt);
}

async function draw(
  ctx: Context,
  cockpit: Cockpit,
  p: PanelDef,
  node: HTMLElement,
  at: string | null,
  cleanups: (() => void)[],
  onAt: (at: string) => void,
): Promise<void> {
  let answer: PanelAnswer;
  try {
    const query = at ? `?at=${encodeURIComponent(at)}` : '';
    answer = await ctx.api.get<PanelAnswer>(`/api/v1/cockpits/${cockpit.id}/panels/${p.id}${query}`);
  } catch (e) {
    node.dataset.error = 'true';
    node.append(el('p', { class: 'error' }, e instanceof Error ? e.message : String(e)));
    return;
  }
  onAt(answer.at);
  if (answer.denied !== undefined) {
    node.dataset.denied = 'true';
    node.append(el('p', { class: 'muted denied' }, `${t('cockpits.denied')}: ${answer.denied}`));
    return;
  }
  const rows = answer.rows ?? [];
  node.dataset.rows = String(rows.length);
  switch (p.kind) {
    case 'kpi':
      return kpi(p, node, rows);
    case 'series':
      return series(p, node, rows, cleanups);
    case 'ranking':
      ranking(p, node, rows);
      node.append(downloads(ctx, cockpit, p, answer.at));
      return;
    case 'alerts':
      return alerts(node, rows);
    case 'map':
      return mapLayer(ctx, p, node, rows, cleanups);
  }
}

function kpi(p: PanelDef, node: HTMLElement, rows: Record<string, unknown>[]): void {
  const raw = rows[0]?.value;
  const value = raw === null || raw === undefined ? null : Number(raw);
  node.dataset.value = value === null ? '' : String(value);
  const level = value === null ? null : levelOf(p, value);
  if (level) node.dataset.level = level;
  const shown = el('div', { class: 'kpi-value' }, value === null ? t('cockpits.novalue') : write(p.format, value));
  if (level) shown.style.color = LEVEL_COLOR[level];
  node.append(shown, el('div', { class: 'kpi-note' }, p.unit ? text(p.unit) : ''));
}

function series(p: PanelDef, node: HTMLElement, rows: Record<string, unknown>[], cleanups: (() => void)[]): void {
  if (!rows.length) {
    node.append(el('p', { class: 'muted' }, t('cockpits.norows')));
    return;
  }
  const plot = el('div', { class: 'panel-chart' });
  node.append(plot);
  const names = [...new Set(rows.map((r) => String(r.series ?? text(p.title))))];
  const c = chart(plot);
  cleanups.push(() => c.dispose());
  // ECharts writes times in the browser's zone or in UTC: times are moved by the city's
  // offset and written as UTC, so the axis reads the city's clock wherever it is viewed.
  const local = (t: unknown): number => {
    const at = new Date(String(t));
    const m = /^([+-])(\d{2}):(\d{2})$/.exec(cityOffset(at));
    const minutes = m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
    return at.getTime() + minutes * 60000;
  };
  c.chart.setOption({
    animation: false,
    useUTC: true,
    grid: { left: 50, right: 16, top: names.length > 1 ? 28 : 10, bottom: 28 },
    tooltip: { trigger: 'axis', valueFormatter: (v: number) => write(p.format, v) },
    legend: names.length > 1 ? { top: 0, textStyle: { color: '#cbd5e1' } } : undefined,
    xAxis: { type: 'time', ...AXIS },
    yAxis: { type: 'value', scale: true, ...AXIS, axisLabel: { ...AXIS.axisLabel, formatter: (v: number) => write(p.format, v) } },
    series: names.map((name) => ({
      name,
      type: 'line',
      showSymbol: false,
      data: rows.filter((r) => String(r.series ?? text(p.title)) === name).map((r) => [local(r.t), r.value === null ? null : Number(r.value)]),
    })),
  });
  plot.dataset.series = String(names.length);
}

function ranking(p: PanelDef, node: HTMLElement, rows: Record<string, unknown>[]): void {
  if (!rows.length) {
    node.append(el('p', { class: 'muted' }, t('cockpits.norows')));
    return;
  }
  const columns = p.columns?.length
    ? p.columns
    : Object.keys(rows[0]).map((name) => ({ name, title: { en: name, zh: name }, format: name === 'value' ? p.format : 'text' }));
  node.append(
    el(
      'table',
      { class: 'grid' },
      el('thead', {}, el('tr', {}, ...columns.map((c) => el('th', { class: c.format === 'text' ? '' : 'num' }, text(c.title))))),
      el(
        'tbody',
        {},
        ...rows.map((r) =>
          el(
            'tr',
            {},
            ...columns.map((c) => {
              const v = r[c.name];
              const own = rowLevel(r);
              if (c.format === 'spark') {
                const values = numbers(v);
                return el('td', { 'data-column': c.name, 'data-raw': values.join(',') }, sparkline(values, own ? LEVEL_COLOR[own] : '#64748b', 120, 28));
              }
              const cell = el(
                'td',
                { class: c.format === 'text' ? '' : 'num', 'data-column': c.name, 'data-raw': v === null || v === undefined ? '' : String(v) },
                v === null || v === undefined ? '—' : c.format === 'text' || c.format === undefined && typeof v === 'string' ? String(v) : write(c.format ?? 'int', Number(v)),
              );
              const level = c.name === 'value' && typeof v !== 'string' && v !== null ? own ?? levelOf(p, Number(v)) : null;
              if (level) {
                cell.style.color = LEVEL_COLOR[level];
                cell.dataset.level = level;
              }
              return cell;
            }),
          ),
        ),
      ),
    ),
  );
}

/** A table's whole result as a file officials open: CSV for Excel, or a workbook. */
function downloads(ctx: Context, cockpit: Cockpit, p: PanelDef, at: string): HTMLElement {
  const day = at.slice(0, 10);
  const button = (format: 'excel' | 'xlsx', label: string) => {
    const b = el('button', { class: 'download', 'data-format': format, type: 'button' }, label);
    b.addEventListener('click', () => {
      const path = `/api/v1/cockpits/${cockpit.id}/panels/${p.id}?at=${encodeURIComponent(at)}&format=${format}`;
      void ctx.api.download(path, `${cockpit.id}-${p.id}-${day}.${format === 'xlsx' ? 'xlsx' : 'csv'}`);
    });
    return b;
  };
  return el('div', { class: 'panel-downloads' }, button('excel', t('data.download.excel')), button('xlsx', t('data.download.xlsx')));
}

function alerts(node: HTMLElement, rows: Record<string, unknown>[]): void {
  if (!rows.length) {
    node.append(el('p', { class: 'muted', 'data-empty': 'true' }, t('cockpits.noalerts')));
    return;
  }
  node.append(
    el(
      'ul',
      { class: 'alert-list' },
      ...rows.map((r) => {
        const level = String(r.level ?? 'warn');
        const item = el('li', { 'data-level': level }, el('span', { class: 'muted' }, dateTime(String(r.at))), ' ', String(r.title));
        item.style.borderLeft = `4px solid ${LEVEL_COLOR[level as keyof typeof LEVEL_COLOR] ?? LEVEL_COLOR.warn}`;
        item.style.paddingLeft = '0.5rem';
        return item;
      }),
    ),
  );
}

async function mapLayer(ctx: Context, p: PanelDef, node: HTMLElement, rows: Record<string, unknown>[], cleanups: (() => void)[]): Promise<void> {
  const box = el('div', { class: 'panel-map' });
  node.append(box);
  const net = await network(ctx.api);
  const m = cityMap(box, net);
  cleanups.push(() => m.destroy());
  await m.ready;
  const colour = (v: number) => {
    const level = levelOf(p, v);
    return level ? LEVEL_COLOR[level] : '#94a3b8';
  };
  let fitted = false;
  const update = (rows: Record<string, unknown>[]) => {
    if (p.layer === 'links') {
      // The network layer draws every link grey; the panel's rows colour theirs.
      const values = new Map<number, number>();
      for (const r of rows) if (r.value !== null) values.set(Number(r.link_id), Number(r.value));
      const features = net.links.features
        .filter((f) => values.has(Number(f.id)))
        .map((f) => ({ ...f, properties: { ...f.properties, colour: colour(values.get(Number(f.id))!) } }));
      upsertGeoJson(m.map, `panel-${p.id}`, { type: 'FeatureCollection', features }, {
        type: 'line',
        layout: { 'line-cap': 'round' },
        paint: { 'line-color': ['get', 'colour'], 'line-width': ['interpolate', ['linear'], ['zoom'], 10, 1.5, 13, 3, 16, 6] },
      });
      node.dataset.features = String(features.length);
    } else {
      const features: GeoJSON.Feature<GeoJSON.Point>[] = [];
      for (const r of rows) {
        const loc = r.loc as { lon: number; lat: number } | undefined;
        const lon = Number(loc?.lon ?? r.lon);
        const lat = Number(loc?.lat ?? r.lat);
        if (!Number.isFinite(lon) || !Number.isFinite(lat)) continue;
        const v = Number(r.value);
        const own = rowLevel(r);
        features.push({
          type: 'Feature',
          properties: { label: String(r.label), value: v, colour: own ? LEVEL_COLOR[own] : colour(v), level: own ?? '' },
          geometry: { type: 'Point', coordinates: [lon, lat] },
        });
      }
      upsertGeoJson(m.map, `panel-${p.id}`, { type: 'FeatureCollection', features }, {
        type: 'circle',
        // A point in alarm is drawn larger and on top of its neighbours.
        layout: { 'circle-sort-key': ['case', ['==', ['get', 'level'], 'alarm'], 1, 0] },
        paint: {
          'circle-radius': ['case', ['==', ['get', 'level'], 'alarm'], 10, 7],
          'circle-color': ['get', 'colour'],
          'circle-stroke-color': '#0f172a',
          'circle-stroke-width': 1,
        },
      });
      node.dataset.features = String(features.length);
      node.dataset.alarms = String(features.filter((f) => f.properties?.level === 'alarm').length);
      if (!fitted && features.length) {
        // Points beyond the road network (villages around the city) widen the first view.
        fitted = true;
        const view = m.map.getBounds();
        const outside = features.filter((f) => !view.contains(f.geometry.coordinates as [number, number]));
        if (outside.length) {
          for (const f of outside) view.extend(f.geometry.coordinates as [number, number]);
          m.map.fitBounds(view, { padding: 40, animate: false });
        }
      }
    }
    node.dataset.rows = String(rows.length);
  };
  update(rows);
  mapUpdaters.set(node, update);
  if (p.layer === 'points') {
    m.map.on('click', `panel-${p.id}`, (e) => {
      const f = e.features?.[0];
      if (f) node.dataset.picked = `${f.properties?.label}: ${write(p.format, Number(f.properties?.value))}`;
    });
  }
  node.dataset.lang = lang();
  // Tests and screenshots wait for the first full frame of the panel's layer.
  m.map.once('idle', () => {
    node.dataset.idle = 'true';
  });
}

export default page;
