// The road network, drawn from citybrain's own datasets (transport.checkpoints and
// transport.links): no tile server, no CDN, so the map works offline.

import type { Api } from './api';
import { CITY_MAP } from './format';

export interface Checkpoint {
  checkpoint_id: number;
  loc: { lon: number; lat: number };
  district: string;
}

export interface LinkInfo {
  link_id: number;
  from_checkpoint: number;
  to_checkpoint: number;
  length_m: number;
  freeflow_s: number;
  district: string;
}

export interface Network {
  checkpoints: GeoJSON.FeatureCollection<GeoJSON.Point>;
  links: GeoJSON.FeatureCollection<GeoJSON.LineString>;
  byLink: Map<number, LinkInfo>;
  bounds: [[number, number], [number, number]];
}

let cached: Promise<Network> | null = null;

export function network(api: Api): Promise<Network> {
  cached ??= load(api).catch((e) => {
    cached = null;
    throw e;
  });
  return cached;
}

async function load(api: Api): Promise<Network> {
  const purpose = 'cockpit: road network map';
  const [checkpoints, links] = await Promise.all([
    api.sql<Checkpoint>('SELECT checkpoint_id, loc, district FROM transport.checkpoints', purpose),
    api.sql<LinkInfo>(
      'SELECT link_id, from_checkpoint, to_checkpoint, length_m, freeflow_s, district FROM transport.links',
      purpose,
    ),
  ]);
  const at = new Map(checkpoints.map((c) => [Number(c.checkpoint_id), c.loc]));
  let [minLon, minLat, maxLon, maxLat] = [180, 90, -180, -90];
  for (const c of checkpoints) {
    minLon = Math.min(minLon, c.loc.lon);
    maxLon = Math.max(maxLon, c.loc.lon);
    minLat = Math.min(minLat, c.loc.lat);
    maxLat = Math.max(maxLat, c.loc.lat);
  }
  const byLink = new Map<number, LinkInfo>();
  const features: GeoJSON.Feature<GeoJSON.LineString>[] = [];
  for (const link of links) {
    const from = at.get(Number(link.from_checkpoint));
    const to = at.get(Number(link.to_checkpoint));
    if (!from || !to) continue;
    const id = Number(link.link_id);
    byLink.set(id, { ...link, link_id: id });
    features.push({
      type: 'Feature',
      id,
      properties: { link_id: id, district: link.district },
      geometry: { type: 'LineString', coordinates: [[from.lon, from.lat], [to.lon, to.lat]] },
    });
  }
  if (checkpoints.length === 0) {
    // No network yet (a new city): the profile's extent, or a few kilometres around its
    // centre, or the world.
    const map = CITY_MAP;
    [minLon, minLat, maxLon, maxLat] = map?.bounds ??
      (map ? [map.centre[0] - 0.05, map.centre[1] - 0.05, map.centre[0] + 0.05, map.centre[1] + 0.05] : [-170, -60, 170, 75]);
  }
  return {
    checkpoints: {
      type: 'FeatureCollection',
      features: checkpoints.map((c) => ({
        type: 'Feature',
        id: Number(c.checkpoint_id),
        properties: { checkpoint_id: Number(c.checkpoint_id), district: c.district },
        geometry: { type: 'Point', coordinates: [c.loc.lon, c.loc.lat] },
      })),
    },
    links: { type: 'FeatureCollection', features },
    byLink,
    bounds: [
      [minLon, minLat],
      [maxLon, maxLat],
    ],
  };
}
