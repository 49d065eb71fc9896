// The contract between the shell and a page. A scene adds a page by writing one folder
// under pages/ that default-exports a Page, and one line in pages.ts.

import type { Api, Whoami } from './api';
import type { LiveFeed } from './live';

export interface Context {
  api: Api;
  live: LiveFeed;
  whoami: Whoami;
  /** Goes to another page, e.g. `traffic?link=12`. */
  navigate(route: string): void;
  /** The route's query part (`link=12` in `#/traffic?link=12`). */
  params: URLSearchParams;
}

export interface Page {
  /** The route: `#/<id>`. */
  id: string;
  /** An i18n key for the navigation label. */
  label: string;
  /** Draws the page into `root`; returns what undoes it (listeners, maps, charts). */
  mount(root: HTMLElement, ctx: Context): () => void;
}
