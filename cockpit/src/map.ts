// The city map: MapLibre GL over a plain background, links coloured by delay index through
// feature state (a live update touches only the links that changed, not the whole source).

import * as maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
// MapLibre's worker is a separate module; ship it as a file beside the bundle.
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import { DI_STEPS, NO_DATA_COLOR } from './format';
import type { Network } from './network';

export type { Map as MapLibreMap } from 'maplibre-gl';

const DI_COLOR: maplibregl.ExpressionSpecification = [
  'step',
  ['to-number', ['coalesce', ['feature-state', 'di'], -1]],
  NO_DATA_COLOR,
  ...DI_STEPS.flatMap((s) => [s.from, s.color]),
] as unknown as maplibregl.ExpressionSpecification;

maplibregl.setWorkerUrl(workerUrl);

export interface CityMap {
  map: maplibregl.Map;
  ready: Promise<void>;
  setDelays(delays: Map<number, number>): void;
  onLinkClick(handler: (linkId: number) => void): void;
  /** The link a click at this canvas point would open. */
  linkAt(point: maplibregl.Point): number | null;
  destroy(): void;
}

export function cityMap(container: HTMLElement, net: Network): CityMap {
  const map = new maplibregl.Map({
    container,
    style: {
      version: 8,
      sources: {},
      // No background layer: the container's CSS colour shows through the transparent
      // canvas, which saves a full-screen fill every frame (it counts without a GPU).
      layers: [],
    },
    bounds: net.bounds,
    fitBoundsOptions: { padding: 30 },
    attributionControl: false,
    dragRotate: false,
    pitchWithRotate: false,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  let shown = new Map<number, number>();
  let clickHandler: ((id: number) => void) | null = null;
  /** The link nearest a point, within a few pixels (thin lines are hard to hit exactly). */
  const linkAt = (p: maplibregl.Point): number | null => {
    const r = 6;
    const hits = map.queryRenderedFeatures(
      [
        [p.x - r, p.y - r],
        [p.x + r, p.y + r],
      ],
      { layers: ['links'] },
    );
    const id = Number(hits[0]?.properties?.link_id);
    return Number.isInteger(id) ? id : null;
  };
  const ready = new Promise<void>((resolve) => {
    map.on('load', () => {
      map.addSource('links', { type: 'geojson', data: net.links });
      map.addSource('checkpoints', { type: 'geojson', data: net.checkpoints });
      map.addLayer({
        id: 'links',
        type: 'line',
        source: 'links',
        layout: { 'line-cap': 'round' },
        paint: {
          'line-color': DI_COLOR,
          'line-width': ['interpolate', ['linear'], ['zoom'], 10, 1, 13, 2, 16, 5],
          // The two directions of a road sit side by side, each on its right.
          'line-offset': ['interpolate', ['linear'], ['zoom'], 10, 0.6, 13, 1.3, 16, 3],
        },
      });
      map.addLayer({
        id: 'checkpoints',
        type: 'circle',
        source: 'checkpoints',
        paint: {
          'circle-radius': ['interpolate', ['linear'], ['zoom'], 10, 1.5, 15, 4],
          'circle-color': '#cbd5e1',
          'circle-opacity': 0.7,
        },
      });
      map.on('mousemove', (e: maplibregl.MapMouseEvent) => {
        map.getCanvas().style.cursor = linkAt(e.point) === null ? '' : 'pointer';
      });
      map.on('click', (e: maplibregl.MapMouseEvent) => {
        const id = linkAt(e.point);
        if (id !== null && clickHandler) clickHandler(id);
      });
      resolve();
    });
  });
  return {
    map,
    ready,
    setDelays(delays) {
      void ready.then(() => {
        for (const id of shown.keys()) {
          if (!delays.has(id)) map.removeFeatureState({ source: 'links', id }, 'di');
        }
        for (const [id, di] of delays) {
          if (shown.get(id) !== di) map.setFeatureState({ source: 'links', id }, { di });
        }
        shown = new Map(delays);
      });
    },
    linkAt,
    onLinkClick(handler) {
      clickHandler = handler;
    },
    destroy() {
      map.remove();
    },
  };
}

/** A layer of one GeoJSON source, without the id and source `upsertGeoJson` gives it. */
type SourceLayer<T> = T extends { id: string; source: unknown } ? Omit<T, 'id' | 'source'> : never;
export type GeoJsonLayer = SourceLayer<
  maplibregl.CircleLayerSpecification | maplibregl.LineLayerSpecification | maplibregl.FillLayerSpecification
>;

/** Sets a GeoJSON source's data, or adds the source and its one layer (named alike) the
 * first time. */
export function upsertGeoJson(map: maplibregl.Map, id: string, data: GeoJSON.FeatureCollection, layer: GeoJsonLayer): void {
  const source = map.getSource(id) as maplibregl.GeoJSONSource | undefined;
  if (source) {
    source.setData(data);
    return;
  }
  map.addSource(id, { type: 'geojson', data });
  map.addLayer({ id, source: id, ...layer } as maplibregl.LayerSpecification);
}

/** An HTML marker (text the map's offline style could not draw: it has no glyphs). */
export function htmlMarker(map: maplibregl.Map, node: HTMLElement, at: [number, number]): maplibregl.Marker {
  return new maplibregl.Marker({ element: node }).setLngLat(at).addTo(map);
}
