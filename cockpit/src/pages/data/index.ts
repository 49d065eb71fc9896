// Data: what the data-centre staff look after: the catalog (owner, sharing class, size,
// freshness), the grants, and how many data calls each department makes.

import { AXIS, chart } from '../../charts';
import { bytes, dateTime, el, int } from '../../format';
import { t } from '../../i18n';
import type { Context, Page } from '../../page';

interface DatasetInfo {
  name: string;
  owner: string;
  sharing: string;
  description?: string;
  rows: number;
  segment_bytes: number;
  stored_bytes: number;
  last_ingest: string | null;
  updated_at: string;
}

interface Grant {
  id: number;
  dataset: string;
  department: string;
  purpose: string;
  raw: string[];
  status: string;
  expires_at: number | null;
}

/** Sums `citybrain_data_calls_total` by calling department and outcome. */
export function callsByDepartment(metrics: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const line of metrics.split('\n')) {
    const m = line.match(/^citybrain_data_calls_total\{(.*)\}\s+([0-9.e+]+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const byOutcome = out.get(labels.department) ?? new Map<string, number>();
    byOutcome.set(labels.outcome, (byOutcome.get(labels.outcome) ?? 0) + Number(m[2]));
    out.set(labels.department, byOutcome);
  }
  return out;
}

function table(headers: string[], rows: (Node | string)[][], id: string): HTMLTableElement {
  return el(
    'table',
    { class: 'grid', id },
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))),
  );
}

/**
 * A dataset as a file officials open: a CSV Excel reads as UTF-8 (浙A stays 浙A), or an
 * Excel workbook (numbers as numbers, instants as date-times). Through the same grants and
 * masks as every read, audited as an export. A refusal is shown on the button.
 */
function downloadButton(api: Context['api'], name: string, format: 'excel' | 'xlsx'): HTMLButtonElement {
  const button = el('button', { class: 'download', 'data-dataset': name, 'data-format': format }, t(`data.download.${format}`));
  button.addEventListener('click', () => {
    button.disabled = true;
    const path = `/api/v1/datasets/${encodeURIComponent(name)}/records?format=${format}&purpose=${encodeURIComponent('cockpit export')}`;
    api
      .download(path, `${name}.${format === 'xlsx' ? 'xlsx' : 'csv'}`)
      .catch((e: Error) => {
        button.title = e.message;
        button.classList.add('refused');
      })
      .finally(() => {
        button.disabled = false;
      });
  });
  return button;
}

const page: Page = {
  id: 'data',
  label: 'nav.data',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const catalog = el('section', { class: 'card wide' }, el('h2', {}, t('data.catalog')));
    const grants = el('section', { class: 'card' }, el('h2', {}, t('data.grants')));
    const plot = el('div', { class: 'calls-chart', id: 'calls-chart' });
    const calls = el('section', { class: 'card' }, el('h2', {}, t('data.calls')), plot);
    root.append(el('div', { class: 'data' }, catalog, grants, calls));
    const bars = chart(plot);

    void (async () => {
      const [{ datasets }, { grants: list }, metrics] = await Promise.all([
        api.get<{ datasets: DatasetInfo[] }>('/api/v1/datasets'),
        api.get<{ grants: Grant[] }>('/api/v1/grants'),
        api.text('/metrics'),
      ]);
      catalog.append(
        table(
          [t('data.name'), t('data.owner'), t('data.sharing'), t('data.rows'), t('data.size'), t('data.fresh'), t('data.download')],
          datasets
            .sort((a, b) => a.name.localeCompare(b.name))
            .map((d) => [
              el('span', { title: d.description ?? '' }, d.name),
              d.owner,
              el('span', { class: `sharing ${d.sharing}` }, t(`sharing.${d.sharing}`)),
              int(d.rows),
              bytes(d.stored_bytes),
              d.last_ingest ? dateTime(d.last_ingest) : dateTime(d.updated_at),
              el('span', { class: 'downloads' }, downloadButton(api, d.name, 'excel'), ' ', downloadButton(api, d.name, 'xlsx')),
            ]),
          'catalog',
        ),
      );
      grants.append(
        list.length === 0
          ? el('p', { class: 'muted' }, t('data.grants.none'))
          : table(
              [t('data.grant.dataset'), t('data.grant.grantee'), t('data.grant.state'), t('data.grant.fields'), t('data.grant.purpose'), t('data.grant.until')],
              list.map((g) => [
                g.dataset,
                g.department,
                g.status,
                g.raw.join(', ') || '—',
                g.purpose,
                g.expires_at ? dateTime(new Date(g.expires_at / 1000).toISOString()) : '—',
              ]),
              'grants',
            ),
      );
      const byDept = callsByDepartment(metrics);
      const departments = [...byDept.keys()].sort();
      const outcomes = [...new Set([...byDept.values()].flatMap((m) => [...m.keys()]))].sort();
      plot.dataset.departments = String(departments.length);
      bars.chart.setOption({
        animation: false,
        grid: { left: 110, right: 24, top: 32, bottom: 24 },
        legend: { textStyle: { color: '#cbd5e1' }, top: 0 },
        tooltip: { trigger: 'axis' },
        xAxis: { type: 'value', ...AXIS },
        yAxis: { type: 'category', data: departments, ...AXIS },
        series: outcomes.map((o) => ({
          name: o,
          type: 'bar',
          stack: 'calls',
          data: departments.map((d) => byDept.get(d)?.get(o) ?? 0),
        })),
      });
      root.dataset.ready = 'true';
    })().catch((e) => root.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`)));

    return () => bars.dispose();
  },
};

export default page;
