// The city map: MapLibre GL over a plain background; the road network is one canvas picture
// under it (netlayer.ts: cheap to pan without a GPU), links coloured by delay index.

import * as maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
// MapLibre's worker is a separate module; ship it as a file beside the bundle.
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import { DI_STEPS, diColor, NO_DATA_COLOR } from './format';
import { NetworkLayer } from './netlayer';
import type { Network } from './network';

export type { Map as MapLibreMap } from 'maplibre-gl';

maplibregl.setWorkerUrl(workerUrl);

export interface CityMap {
  map: maplibregl.Map;
  ready: Promise<void>;
  setDelays(delays: Map<number, number>): void;
  onLinkClick(handler: (linkId: number) => void): void;
  /** The link a click at this canvas point would open. */
  linkAt(point: maplibregl.Point): number | null;
  /** The network's picture (null until the map has loaded). */
  readonly network: NetworkLayer | null;
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
  // North stays up: the network's picture moves and scales with the map, it does not turn.
  map.touchZoomRotate.disableRotation();
  map.keyboard.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  let clickHandler: ((id: number) => void) | null = null;
  let layer: NetworkLayer | null = null;
  /** The link nearest a point, within a few pixels (thin lines are hard to hit exactly). */
  const linkAt = (p: maplibregl.Point): number | null => layer?.linkAt(p) ?? null;
  const ready = new Promise<void>((resolve) => {
    map.on('load', () => {
      layer = new NetworkLayer(
        map,
        net.links.features.map((f) => ({ id: Number(f.id), coordinates: f.geometry.coordinates as [number, number][] })),
        net.checkpoints.features.map((f) => f.geometry.coordinates as [number, number]),
        NO_DATA_COLOR,
        DI_STEPS.map((s) => s.color),
      );
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
    get network() {
      return layer;
    },
    setDelays(delays) {
      void ready.then(() => layer?.setColours(new Map([...delays].map(([id, di]) => [id, diColor(di)]))));
    },
    linkAt,
    onLinkClick(handler) {
      clickHandler = handler;
    },
    destroy() {
      layer?.destroy();
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
