// ECharts, with only the parts the cockpit draws (keeps the bundle small).
import * as echarts from 'echarts/core';
import { BarChart, LineChart } from 'echarts/charts';
import {
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  TooltipComponent,
} from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([
  LineChart,
  BarChart,
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  TooltipComponent,
  CanvasRenderer,
]);

export { echarts };

export const AXIS = {
  axisLine: { lineStyle: { color: '#475569' } },
  axisLabel: { color: '#cbd5e1' },
  splitLine: { lineStyle: { color: '#1e293b' } },
};

/** How many values a chart's series hold (nulls are gaps, not values). */
function values(instance: echarts.ECharts): number {
  const series = (instance.getOption()?.series ?? []) as { data?: unknown[] }[];
  return series.reduce((n, s) => n + (s.data ?? []).filter((v) => v !== null && v !== undefined).length, 0);
}

/** A chart in `node` that follows the node's size. Once drawn, the node says how many
 * values it shows (`data-drawn`), so a test finds an empty chart on any page. */
export function chart(node: HTMLElement): { chart: echarts.ECharts; dispose(): void } {
  const instance = echarts.init(node, undefined, { renderer: 'canvas' });
  node.dataset.chart = '';
  instance.on('finished', () => {
    node.dataset.drawn = String(values(instance));
  });
  const observer = new ResizeObserver(() => instance.resize());
  observer.observe(node);
  return {
    chart: instance,
    dispose() {
      observer.disconnect();
      instance.dispose();
    },
  };
}
