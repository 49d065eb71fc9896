// The road network as one picture: a 2-D canvas under MapLibre's transparent WebGL canvas,
// drawn when the view settles and only moved (a CSS transform) while the map pans or zooms.
//
// Why not a MapLibre line layer: without a GPU (SwiftShader), MapLibre redraws every tile's
// lines, clipping masks included, on every frame of a pan; measured at 1920×1080 it took
// panning from 21 fps with nothing drawn to 9.5 with 5,000 links (13 with one tuned source).
// Moving a finished picture costs the compositor one copy a frame, whatever the network's
// size: 18.2 fps with the same 5,000 links (docs/benchmarks.md, "Frame budget"; ADR
// 2026-12-03-network-canvas). The price: the edges uncovered by a pan stay empty until it
// ends (a margin a quarter of the view wide is drawn around it, so most pans uncover
// nothing and need no new picture), and clicks find links here, not through MapLibre.

import * as maplibregl from 'maplibre-gl';

/** Linear interpolation between (zoom, value) stops, clamped at the ends (as MapLibre's
 * `interpolate` expression). */
function byZoom(stops: [number, number][], z: number): number {
  if (z <= stops[0][0]) return stops[0][1];
  for (let i = 1; i < stops.length; i++) {
    const [z1, v1] = stops[i];
    if (z <= z1) {
      const [z0, v0] = stops[i - 1];
      return v0 + ((v1 - v0) * (z - z0)) / (z1 - z0);
    }
  }
  return stops[stops.length - 1][1];
}

const WIDTH: [number, number][] = [
  [10, 1],
  [13, 2],
  [16, 5],
];
// The two directions of a road sit side by side, each on its right.
const OFFSET: [number, number][] = [
  [10, 0.6],
  [13, 1.3],
  [16, 3],
];
const RADIUS: [number, number][] = [
  [10, 1.5],
  [15, 4],
];
/** The share of the view drawn beyond each edge, so a short pan uncovers nothing. */
const MARGIN = 0.25;

export interface NetLink {
  id: number;
  coordinates: [number, number][];
}

export class NetworkLayer {
  readonly canvas: HTMLCanvasElement;
  private g: CanvasRenderingContext2D;
  /** Each link's points in Web Mercator world units (0..1), projected once. */
  private world: { id: number; xy: Float64Array }[] = [];
  private points: Float64Array = new Float64Array();
  private colours = new Map<number, string>();
  private fallback: string;
  /** The view the picture was drawn for. */
  private drawn = { x: 0.5, y: 0.5, zoom: 0, w: 0, h: 0 };
  /** Drawn segments in canvas pixels (x1, y1, x2, y2) and their links. */
  private segs = new Float32Array();
  private segLink = new Int32Array();
  private pending = 0;
  visible = true;
  /** How many links the last picture drew (tests and benchmarks read it). */
  drawnLinks = 0;

  /**
   * `fallback` colours links without a colour of their own; `palette` lists the others from
   * the least to the most urgent (drawn in that order, so the worst is on top).
   */
  constructor(
    private map: maplibregl.Map,
    links: NetLink[],
    points: [number, number][],
    fallback: string,
    private palette: string[],
  ) {
    this.fallback = fallback;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'network-layer';
    // Under the WebGL canvas: MapLibre's own layers (lots, alerts, a panel's colours) stay on top.
    map.getCanvasContainer().insertBefore(this.canvas, map.getCanvas());
    this.g = this.canvas.getContext('2d')!;
    this.setLinks(links);
    this.points = toWorld(points);
    map.on('move', this.follow);
    map.on('moveend', this.settle);
    map.on('resize', this.schedule);
    this.redraw();
  }

  /** Replaces the links drawn (the network, or the network with more). */
  setLinks(links: NetLink[]): void {
    this.world = links.map((l) => ({ id: l.id, xy: toWorld(l.coordinates) }));
    this.schedule();
  }

  /** Colours by link (others get the fallback); redrawn at the next frame. */
  setColours(colours: Map<number, string>): void {
    this.colours = colours;
    this.schedule();
  }

  setVisible(visible: boolean): void {
    this.visible = visible;
    this.canvas.style.display = visible ? '' : 'none';
    if (visible) this.redraw();
  }

  readonly schedule = (): void => {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.redraw();
    });
  };

  /** When a move ends: a picture at the same zoom that still covers the view stays (it is
   * exact, only moved); otherwise it is drawn again for the new view. */
  private readonly settle = (): void => {
    const { x, y, zoom, w, h } = this.drawn;
    const now = this.view();
    const size = 512 * 2 ** now.zoom;
    const dx = Math.abs((x - now.x) * size);
    const dy = Math.abs((y - now.y) * size);
    const covered = dx <= Math.round(w * MARGIN) && dy <= Math.round(h * MARGIN) && now.w === w && now.h === h;
    if (Math.abs(now.zoom - zoom) < 1e-9 && covered) return;
    this.schedule();
  };

  /** While the map moves, the picture moves with it: a translation and a scale. */
  private readonly follow = (): void => {
    const { x, y, zoom, w, h } = this.drawn;
    const now = this.view();
    const k = 2 ** (now.zoom - zoom);
    const size = 512 * 2 ** now.zoom;
    const dx = (x - now.x) * size + (now.w - w) / 2;
    const dy = (y - now.y) * size + (now.h - h) / 2;
    this.canvas.style.transform = `translate(${dx}px, ${dy}px) scale(${k})`;
  };

  private view() {
    const c = maplibregl.MercatorCoordinate.fromLngLat(this.map.getCenter());
    const box = this.map.getContainer();
    return { x: c.x, y: c.y, zoom: this.map.getZoom(), w: box.clientWidth, h: box.clientHeight };
  }

  redraw(): void {
    const view = this.view();
    this.drawn = view;
    const { w, h, zoom } = view;
    const mx = Math.round(w * MARGIN);
    const my = Math.round(h * MARGIN);
    const cw = w + 2 * mx;
    const ch = h + 2 * my;
    const ratio = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(cw * ratio) || this.canvas.height !== Math.round(ch * ratio)) {
      this.canvas.width = Math.round(cw * ratio);
      this.canvas.height = Math.round(ch * ratio);
      Object.assign(this.canvas.style, { left: `${-mx}px`, top: `${-my}px`, width: `${cw}px`, height: `${ch}px` });
    }
    this.canvas.style.transform = '';
    const g = this.g;
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, cw, ch);
    if (!this.visible) return;
    const size = 512 * 2 ** zoom;
    const ox = cw / 2 - view.x * size;
    const oy = ch / 2 - view.y * size;
    const offset = byZoom(OFFSET, zoom);
    const slack = 20; // a link is drawn if any of it is within this of the canvas
    // Links grouped by colour: one path and one stroke per colour, the worst on top.
    const groups = new Map<string, number[]>();
    let nsegs = 0;
    for (let i = 0; i < this.world.length; i++) {
      const xy = this.world[i].xy;
      let minX = Infinity;
      let minY = Infinity;
      let maxX = -Infinity;
      let maxY = -Infinity;
      for (let j = 0; j < xy.length; j += 2) {
        const px = xy[j] * size + ox;
        const py = xy[j + 1] * size + oy;
        minX = Math.min(minX, px);
        maxX = Math.max(maxX, px);
        minY = Math.min(minY, py);
        maxY = Math.max(maxY, py);
      }
      if (maxX < -slack || maxY < -slack || minX > cw + slack || minY > ch + slack) continue;
      const colour = this.colours.get(this.world[i].id) ?? this.fallback;
      let list = groups.get(colour);
      if (!list) groups.set(colour, (list = []));
      list.push(i);
      nsegs += xy.length / 2 - 1;
    }
    this.segs = new Float32Array(nsegs * 4);
    this.segLink = new Int32Array(nsegs);
    let s = 0;
    g.lineWidth = byZoom(WIDTH, zoom);
    // Round ends only where lines are wide enough to show them (they cost in rasterising).
    g.lineCap = g.lineWidth >= 3 ? 'round' : 'butt';
    const rank = (c: string) => (c === this.fallback ? -1 : this.palette.indexOf(c) < 0 ? this.palette.length : this.palette.indexOf(c));
    const order = [...groups.keys()].sort((a, b) => rank(a) - rank(b));
    this.drawnLinks = 0;
    for (const colour of order) {
      g.strokeStyle = colour;
      g.beginPath();
      let inPath = 0;
      for (const i of groups.get(colour)!) {
        const xy = this.world[i].xy;
        this.drawnLinks++;
        // Stroked in batches: one path of tens of thousands of lines rasterises far slower
        // than many small ones (measured: 50,000 links, ~500 ms as one path).
        if (++inPath > 512) {
          g.stroke();
          g.beginPath();
          inPath = 0;
        }
        for (let j = 0; j + 3 < xy.length; j += 2) {
          let x1 = xy[j] * size + ox;
          let y1 = xy[j + 1] * size + oy;
          let x2 = xy[j + 2] * size + ox;
          let y2 = xy[j + 3] * size + oy;
          const len = Math.hypot(x2 - x1, y2 - y1) || 1;
          // To the right of the direction of travel (screen y points down).
          const nx = (-(y2 - y1) / len) * offset;
          const ny = ((x2 - x1) / len) * offset;
          x1 += nx;
          y1 += ny;
          x2 += nx;
          y2 += ny;
          g.moveTo(x1, y1);
          g.lineTo(x2, y2);
          this.segs.set([x1, y1, x2, y2], s * 4);
          this.segLink[s++] = this.world[i].id;
        }
      }
      g.stroke();
    }
    const r = byZoom(RADIUS, zoom);
    g.fillStyle = 'rgba(203, 213, 225, 0.7)';
    // Below 3 px a dot is drawn as a square: the same to the eye, and thousands of arcs
    // cost more to rasterise than the links.
    const round = r >= 3;
    g.beginPath();
    for (let j = 0; j < this.points.length; j += 2) {
      const px = this.points[j] * size + ox;
      const py = this.points[j + 1] * size + oy;
      if (px < -r || py < -r || px > cw + r || py > ch + r) continue;
      if (round) {
        g.moveTo(px + r, py);
        g.arc(px, py, r, 0, 2 * Math.PI);
      } else {
        g.rect(px - r, py - r, 2 * r, 2 * r);
      }
    }
    g.fill();
    this.canvas.dataset.links = String(this.drawnLinks);
  }

  /** The link whose drawn line passes within `radius` pixels of a point of the map's
   * container, the nearest; null if none. */
  linkAt(p: { x: number; y: number }, radius = 6): number | null {
    if (!this.visible) return null;
    const { x, y, zoom, w, h } = this.drawn;
    const now = this.view();
    const k = 2 ** (now.zoom - zoom);
    const size = 512 * 2 ** now.zoom;
    // Undo the move since the picture was drawn, then into canvas pixels.
    const dx = (x - now.x) * size + (now.w - w) / 2;
    const dy = (y - now.y) * size + (now.h - h) / 2;
    const cx = (p.x - w / 2 - dx) / k + w / 2 + Math.round(w * MARGIN);
    const cy = (p.y - h / 2 - dy) / k + h / 2 + Math.round(h * MARGIN);
    const r = radius / k;
    let best: number | null = null;
    let bestD = r * r;
    const segs = this.segs;
    for (let i = 0; i < this.segLink.length; i++) {
      const x1 = segs[4 * i];
      const y1 = segs[4 * i + 1];
      const x2 = segs[4 * i + 2];
      const y2 = segs[4 * i + 3];
      const vx = x2 - x1;
      const vy = y2 - y1;
      const t = Math.max(0, Math.min(1, ((cx - x1) * vx + (cy - y1) * vy) / (vx * vx + vy * vy || 1)));
      const d = (x1 + t * vx - cx) ** 2 + (y1 + t * vy - cy) ** 2;
      if (d <= bestD) {
        bestD = d;
        best = this.segLink[i];
      }
    }
    return best;
  }

  destroy(): void {
    cancelAnimationFrame(this.pending);
    this.map.off('move', this.follow);
    this.map.off('moveend', this.settle);
    this.map.off('resize', this.schedule);
    this.canvas.remove();
  }
}

function toWorld(points: [number, number][]): Float64Array {
  const out = new Float64Array(points.length * 2);
  points.forEach(([lon, lat], i) => {
    const m = maplibregl.MercatorCoordinate.fromLngLat([lon, lat]);
    out[2 * i] = m.x;
    out[2 * i + 1] = m.y;
  });
  return out;
}
