// Policy delivery (亲清在线): what each subsidy policy has paid, to how many enterprises,
// from the payouts ledger (policy.payouts) the matching runs write.

import { ApiError } from '../../api';
import { AXIS, chart } from '../../charts';
import { el, int } from '../../format';
import { t } from '../../i18n';
import type { Context, Page } from '../../page';

const PURPOSE = 'cockpit: policy delivery';

interface PolicyInfo {
  id: string;
  title: string;
  department: string;
  basis: string;
}

interface PaidRow {
  policy: string;
  enterprises: number;
  paid: number;
  qualified: number;
  last_decided: string;
}

/** Fen as yuan with thousands separators (money is integer fen everywhere else). */
function yuan(fen: number): string {
  return `¥${(fen / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

const page: Page = {
  id: 'policy',
  label: 'nav.policy',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const kpis = el('div', { class: 'kpis policy-kpis' });
    const plot = el('div', { class: 'day-chart', id: 'policy-chart' });
    const list = el('section', { class: 'card wide' }, el('h2', {}, t('policy.table')));
    root.append(
      el(
        'div',
        { class: 'traffic' },
        el('section', { class: 'card wide' }, el('h2', {}, t('policy.title')), kpis, plot),
        list,
      ),
    );
    const bars = chart(plot);
    const kpi = (label: string, value: string, id: string) =>
      el('div', { class: 'kpi', 'data-kpi': id }, el('div', { class: 'kpi-label' }, t(label)), el('div', { class: 'kpi-value' }, value));

    void (async () => {
      let policies: PolicyInfo[] = [];
      try {
        policies = (await api.get<{ policies: PolicyInfo[] }>('/api/v1/policy/policies')).policies;
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
      }
      let paid: PaidRow[] = [];
      let unreadable = false;
      try {
        paid = await api.sql<PaidRow>(
          `SELECT policy, count(DISTINCT enterprise_id) AS enterprises, sum(paid) AS paid,
                  sum(qualified) AS qualified, max(decided_at) AS last_decided
             FROM policy.payouts GROUP BY policy ORDER BY paid DESC, policy`,
          PURPOSE,
        );
      } catch (e) {
        // No ledger in this hub, or no grant to read it: the page says so below.
        if (!(e instanceof ApiError)) throw e;
        unreadable = true;
      }
      const byId = new Map(paid.map((p) => [p.policy, p]));
      const total = paid.reduce((s, p) => s + Number(p.paid), 0);
      const firms = await api
        .sql<{ n: number }>('SELECT count(DISTINCT enterprise_id) AS n FROM policy.payouts WHERE paid > 0', PURPOSE)
        .then((r) => Number(r[0]?.n ?? 0))
        .catch(() => 0);
      kpis.replaceChildren(
        kpi('policy.loaded', int(policies.length), 'policies'),
        kpi('policy.firms', int(firms), 'firms'),
        kpi('policy.total', yuan(total), 'total'),
        kpi('policy.paying', int(paid.filter((p) => Number(p.paid) > 0).length), 'paying'),
      );
      if (!paid.length) {
        // Words in place of an empty chart: what to do for there to be something to show.
        plot.replaceWith(el('p', { class: 'muted empty-state', id: 'policy-none' }, t(unreadable ? 'policy.unreadable' : 'policy.none')));
      }
      const top = paid.slice(0, 15).reverse();
      bars.chart.setOption({
        animation: false,
        grid: { left: 150, right: 30, top: 10, bottom: 30 },
        tooltip: { trigger: 'axis' },
        xAxis: { type: 'value', ...AXIS, axisLabel: { ...AXIS.axisLabel, formatter: (v: number) => `¥${(v / 1e6).toFixed(1)}M` } },
        yAxis: { type: 'category', data: top.map((p) => p.policy), ...AXIS },
        series: [{ type: 'bar', data: top.map((p) => Number(p.paid) / 100), itemStyle: { color: '#34d399' } }],
      });
      plot.dataset.bars = String(top.length);
      const headers = ['policy.id', 'policy.name', 'policy.department', 'policy.enterprises', 'policy.paid', 'policy.cut'];
      const rows = policies
        .map((p) => ({ p, r: byId.get(p.id) }))
        .sort((a, b) => Number(b.r?.paid ?? 0) - Number(a.r?.paid ?? 0) || a.p.id.localeCompare(b.p.id))
        .map(({ p, r }) => {
          // What the budget held back: qualified but not paid (pro rata or first come).
          const cut = r ? Number(r.qualified) - Number(r.paid) : 0;
          return el(
            'tr',
            { 'data-policy': p.id },
            el('td', {}, p.id),
            el('td', { title: p.basis }, p.title),
            el('td', {}, p.department),
            el('td', { class: 'num' }, r ? int(Number(r.enterprises)) : '—'),
            el('td', { class: 'num' }, r ? yuan(Number(r.paid)) : '—'),
            el('td', { class: 'num' }, r && cut > 0 ? yuan(cut) : '—'),
          );
        });
      list.append(
        el(
          'table',
          { class: 'grid', id: 'policy-table' },
          el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, t(h))))),
          el('tbody', {}, ...rows),
        ),
      );
      root.dataset.ready = 'true';
      root.dataset.total = String(total);
    })().catch((e) => {
      root.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`));
    });

    return () => bars.dispose();
  },
};

export default page;
