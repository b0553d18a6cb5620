// ECharts, tree-shaken to what the pages use, with the console's dark styling.
import * as echarts from 'echarts/core';
import { BarChart, EffectScatterChart, LineChart, LinesChart, MapChart } from 'echarts/charts';
import {
  BrushComponent,
  DataZoomComponent,
  GeoComponent,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
} from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { axisTime, esc, time } from './fmt.js';

echarts.use([
  BarChart,
  EffectScatterChart,
  LineChart,
  LinesChart,
  MapChart,
  BrushComponent,
  DataZoomComponent,
  GeoComponent,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
  CanvasRenderer,
]);

export { echarts };

export const PALETTE = ['#38bdf8', '#f59e0b', '#a78bfa', '#34d399', '#f472b6', '#facc15', '#60a5fa', '#fb7185', '#4ade80', '#c084fc'];
export const SEVERITY_COLORS = { info: '#64748b', low: '#38bdf8', medium: '#eab308', high: '#f97316', critical: '#ef4444' };

const live = new Set();

/** A chart in `el`, disposed with the page. */
export function chart(el) {
  const c = echarts.init(el, null, { renderer: 'canvas' });
  live.add(c);
  return c;
}

/** Disposes every chart (page change). */
export function disposeAll() {
  for (const c of live) c.dispose();
  live.clear();
}

window.addEventListener('resize', () => {
  for (const c of live) c.resize();
});

/** Common option parts. */
export const base = {
  // Ticks fall on UTC boundaries; every label and tooltip is written in the chosen
  // zone (timeX, timeTooltip).
  useUTC: true,
  backgroundColor: 'transparent',
  animationDuration: 250,
  animationDurationUpdate: 250,
  color: PALETTE,
  textStyle: { color: '#aab4c8', fontFamily: 'system-ui, sans-serif' },
  grid: { left: 60, right: 16, top: 30, bottom: 28 },
  tooltip: {
    trigger: 'axis',
    backgroundColor: '#0d1424',
    borderColor: '#1c2740',
    textStyle: { color: '#d6deeb', fontSize: 12 },
  },
  legend: { top: 0, textStyle: { color: '#aab4c8' }, icon: 'roundRect', itemWidth: 10, itemHeight: 6 },
};

export const axisStyle = {
  axisLine: { lineStyle: { color: '#1c2740' } },
  splitLine: { lineStyle: { color: '#131c31' } },
  axisLabel: { color: '#7d8aa5' },
};

/**
 * Drag-to-zoom on a time chart: a horizontal drag selects a span of the x axis and
 * `onRange(fromMs, toMs)` gets it (the page then asks for that range, with finer
 * buckets). Call after each setOption (which resets the brush).
 */
export function zoomable(c, onRange) {
  c.setOption({
    brush: {
      xAxisIndex: 'all',
      brushType: 'lineX',
      brushMode: 'single',
      transformable: false,
      throttleType: 'debounce',
      brushStyle: { color: 'rgba(56,189,248,0.15)', borderColor: '#38bdf8', borderWidth: 1 },
    },
  });
  c.dispatchAction({ type: 'takeGlobalCursor', key: 'brush', brushOption: { brushType: 'lineX', brushMode: 'single' } });
  if (c.__zoomable) return;
  c.__zoomable = true;
  c.on('brushEnd', (e) => {
    const r = e.areas?.[0]?.coordRange;
    if (!r) return;
    const from = Math.floor(Math.min(r[0], r[1]));
    const to = Math.ceil(Math.max(r[0], r[1]));
    c.dispatchAction({ type: 'brush', areas: [] });
    if (to - from >= 1000) onRange(from, to);
  });
}

/** A time x axis over exactly [from, to] (ms), labelled in the chosen zone. */
export function timeX(from, to) {
  const f = Number(from);
  const t = Number(to);
  return {
    type: 'time',
    min: f,
    max: t,
    ...axisStyle,
    axisLabel: { color: '#7d8aa5', hideOverlap: true, formatter: (v) => axisTime(v, t - f) },
  };
}

/** An axis tooltip for a time axis: the bucket's time in the chosen zone, then each series. */
export function timeTooltip(fmt = String) {
  return {
    ...base.tooltip,
    formatter: (ps) => {
      const list = Array.isArray(ps) ? ps : [ps];
      if (!list.length) return '';
      const head = esc(time(list[0].value?.[0] ?? list[0].axisValue));
      return [head, ...list.map((p) => `${p.marker}${esc(p.seriesName)}: <b>${esc(fmt(p.value?.[1]))}</b>`)].join('<br>');
    },
  };
}
