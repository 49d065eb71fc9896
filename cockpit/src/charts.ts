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

/** A chart in `node` that follows the node's size. */
export function chart(node: HTMLElement): { chart: echarts.ECharts; dispose(): void } {
  const instance = echarts.init(node, undefined, { renderer: 'canvas' });
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
