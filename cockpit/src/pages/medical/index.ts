// Medical results recognised across hospitals (浙医互认): how many orders a valid result
// from another hospital answered, the tests and money that saved, by test and by hospital,
// and why the others were not recognised. From the ledger medical.recognitions, patients
// pseudonymised by the viewer's grant.

import { ApiError } from '../../api';
import { AXIS, chart } from '../../charts';
import { el, int } from '../../format';
import { t } from '../../i18n';
import type { Context, Page } from '../../page';

const PURPOSE = 'cockpit: medical recognition';

interface ByTest {
  test_code: string;
  orders: number;
  recognised: number;
  saved: number;
}

interface ByReason {
  reason: string;
  orders: number;
}

interface ByHospital {
  result_hospital: string;
  recognised: number;
  saved: number;
}

function yuan(fen: number): string {
  return `¥${(fen / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

const page: Page = {
  id: 'medical',
  label: 'nav.medical',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const kpis = el('div', { class: 'kpis policy-kpis' });
    const plot = el('div', { class: 'day-chart', id: 'medical-chart' });
    const reasons = el('section', { class: 'card' }, el('h2', {}, t('medical.reasons')));
    const hospitals = el('section', { class: 'card' }, el('h2', {}, t('medical.hospitals')));
    root.append(el('div', { class: 'traffic' }, el('section', { class: 'card wide' }, el('h2', {}, t('medical.title')), kpis, plot), reasons, hospitals));
    const bars = chart(plot);
    const kpi = (label: string, value: string, id: string) =>
      el('div', { class: 'kpi', 'data-kpi': id }, el('div', { class: 'kpi-label' }, t(label)), el('div', { class: 'kpi-value' }, value));

    void (async () => {
      let byTest: ByTest[] = [];
      let byReason: ByReason[] = [];
      let byHospital: ByHospital[] = [];
      let unreadable = false;
      try {
        [byTest, byReason, byHospital] = await Promise.all([
          api.sql<ByTest>(
            `SELECT test_code, count(*) AS orders, sum(CASE WHEN recognised THEN 1 ELSE 0 END) AS recognised, sum(saved) AS saved
               FROM medical.recognitions GROUP BY test_code ORDER BY saved DESC, test_code`,
            PURPOSE,
          ),
          api.sql<ByReason>('SELECT reason, count(*) AS orders FROM medical.recognitions GROUP BY reason ORDER BY orders DESC, reason', PURPOSE),
          api.sql<ByHospital>(
            `SELECT result_hospital, count(*) AS recognised, sum(saved) AS saved FROM medical.recognitions
              WHERE recognised GROUP BY result_hospital ORDER BY saved DESC, result_hospital`,
            PURPOSE,
          ),
        ]);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        unreadable = true;
      }
      const orders = byTest.reduce((s, r) => s + Number(r.orders), 0);
      const recognised = byTest.reduce((s, r) => s + Number(r.recognised), 0);
      const saved = byTest.reduce((s, r) => s + Number(r.saved), 0);
      kpis.replaceChildren(
        kpi('medical.orders', int(orders), 'orders'),
        kpi('medical.recognised', int(recognised), 'recognised'),
        kpi('medical.share', orders ? `${Math.round((recognised / orders) * 100)}%` : '0%', 'share'),
        kpi('medical.saved', yuan(saved), 'saved'),
      );
      root.dataset.saved = String(saved);
      if (!orders) {
        plot.replaceWith(el('p', { class: 'muted empty-state', id: 'medical-none' }, t(unreadable ? 'medical.unreadable' : 'medical.none')));
        reasons.remove();
        hospitals.remove();
        root.dataset.ready = 'true';
        return;
      }
      const shown = byTest.filter((r) => Number(r.saved) > 0).reverse();
      bars.chart.setOption({
        animation: false,
        grid: { left: 90, right: 30, top: 10, bottom: 30 },
        tooltip: { trigger: 'axis' },
        xAxis: { type: 'value', ...AXIS, axisLabel: { ...AXIS.axisLabel, formatter: (v: number) => `¥${v.toLocaleString('en-US')}` } },
        yAxis: { type: 'category', data: shown.map((r) => r.test_code), ...AXIS },
        series: [{ type: 'bar', data: shown.map((r) => Number(r.saved) / 100), itemStyle: { color: '#34d399' } }],
      });
      plot.dataset.bars = String(shown.length);
      reasons.append(
        el(
          'table',
          { class: 'grid', id: 'medical-reasons' },
          el('thead', {}, el('tr', {}, el('th', {}, t('medical.reason')), el('th', { class: 'num' }, t('medical.orders')))),
          el('tbody', {}, ...byReason.map((r) => el('tr', { 'data-reason': r.reason }, el('td', {}, t(`reason.${r.reason}`)), el('td', { class: 'num' }, int(Number(r.orders)))))),
        ),
      );
      hospitals.append(
        el(
          'table',
          { class: 'grid', id: 'medical-hospitals' },
          el('thead', {}, el('tr', {}, el('th', {}, t('medical.hospital')), el('th', { class: 'num' }, t('medical.recognised')), el('th', { class: 'num' }, t('medical.saved')))),
          el(
            'tbody',
            {},
            ...byHospital.map((h) =>
              el('tr', {}, el('td', {}, h.result_hospital), el('td', { class: 'num' }, int(Number(h.recognised))), el('td', { class: 'num' }, yuan(Number(h.saved)))),
            ),
          ),
        ),
      );
      root.dataset.ready = 'true';
    })().catch((e) => root.append(el('div', { class: 'error' }, `${t('error')}: ${e.message ?? e}`)));
    return () => bars.dispose();
  },
};

export default page;
