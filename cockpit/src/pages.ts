// The cockpit's pages, in navigation order. A new scene's page is one folder under
// pages/ and one line here.
import type { Page } from './page';
import overview from './pages/overview';
import traffic from './pages/traffic';
import parking from './pages/parking';
import signals from './pages/signals';
import data from './pages/data';
import policy from './pages/policy';
import medical from './pages/medical';
import cockpits from './pages/cockpits';
import code from './pages/code';

export const pages: Page[] = [overview, cockpits, traffic, signals, parking, policy, medical, code, data];
