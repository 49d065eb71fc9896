// The parking queries the pages share.

import { type Api, hasDataset } from './api';

export interface ParkingRow {
  at: string;
  scope: string;
  id: string;
  occupied: number;
  capacity: number;
  parking_index: number;
  free: number;
  berth_index: number;
}

export interface LotRow {
  lot_id: number;
  name: string;
  loc: { lon: number; lat: number };
  capacity: number;
  kind: string;
  district: string;
}

export interface GuideLot {
  lot: number;
  name: string;
  kind: string;
  loc: { lon: number; lat: number };
  distance_m: number;
  walk_m: number;
  capacity: number;
  free_now: number;
  predicted_free: number;
  chance: number;
  price_2h: number;
}

/** Whether this hub has the parking scene's datasets. */
export async function hasParking(api: Api): Promise<boolean> {
  return hasDataset(api, 'parking.index');
}

/** The city's parking index over the newest day (5-minute instants). */
export async function cityParking(api: Api, purpose: string): Promise<ParkingRow[]> {
  return api.sql<ParkingRow>(
    `SELECT at, scope, id, occupied, capacity, parking_index, free, berth_index
       FROM parking.index
      WHERE scope = 'city' AND at > (SELECT max(at) FROM parking.index) - INTERVAL '24 hours'
      ORDER BY at`,
    purpose,
  );
}

/** Each lot's newest parking index (at or before `at` when given). */
export async function lotsNow(api: Api, purpose: string, at: Date | null): Promise<Map<number, ParkingRow>> {
  const end = at ? `TIMESTAMP '${at.toISOString()}'` : '(SELECT max(at) FROM parking.index)';
  const rows = await api.sql<ParkingRow>(
    `SELECT at, scope, id, occupied, capacity, parking_index, free, berth_index
       FROM parking.index
      WHERE scope = 'lot' AND at = (SELECT max(at) FROM parking.index WHERE at <= ${end})`,
    purpose,
  );
  return new Map(rows.map((r) => [Number(r.id), r]));
}

export async function lots(api: Api, purpose: string): Promise<LotRow[]> {
  return api.sql<LotRow>('SELECT lot_id, name, loc, capacity, kind, district FROM parking.lots ORDER BY lot_id', purpose);
}

export function yuan(fen: number): string {
  return `¥${(fen / 100).toFixed(2)}`;
}
