// One connection to the indices feed, shared by every page.

import type { Api } from './api';

export interface LiveView {
  at: string;
  on_road: number;
  vehicles_today: number;
}

export type IndexEvent =
  | { type: 'live'; live: LiveView }
  | { type: 'rows'; dataset: string; rows: Record<string, unknown>[]; total: number }
  // An emergency run's progress (signal scene): `driving` with the road, the next light and
  // the ETA, then `arrived` with its travel time.
  | {
      type: 'emergency';
      run_id: string;
      state: 'driving' | 'arrived';
      ts: string;
      edge?: string;
      next_light?: string | null;
      eta_s?: number | null;
      stops: number;
      travel_s?: number;
    };

export class LiveFeed {
  private listeners = new Set<(e: IndexEvent) => void>();
  private controller = new AbortController();
  latest: LiveView | null = null;

  constructor(api: Api) {
    void api.follow(
      '/api/v1/indices/stream',
      (data) => {
        const event = data as IndexEvent;
        if (event.type === 'live') this.latest = event.live;
        for (const listener of this.listeners) listener(event);
      },
      this.controller.signal,
    );
  }

  /** Calls `listener` on every event; returns the unsubscribe. */
  on(listener: (e: IndexEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.controller.abort();
  }
}
