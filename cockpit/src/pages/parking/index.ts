// Parking: lots near a chosen place with their predicted free berths. The lots and their
// forecasts come with the parking scene (datasets parking.*); until a hub has them this
// page says so rather than showing invented numbers.

import { el, int } from '../../format';
import { t } from '../../i18n';
import type { Context, Page } from '../../page';

interface DatasetSummary {
  name: string;
  rows: number;
}

const page: Page = {
  id: 'parking',
  label: 'nav.parking',
  mount(root: HTMLElement, ctx: Context) {
    const body = el('div', { class: 'card' }, el('h2', {}, t('parking.title')));
    root.append(el('div', { class: 'parking' }, body));
    void ctx.api
      .get<{ datasets: DatasetSummary[] }>('/api/v1/datasets')
      .then(({ datasets }) => {
        const parking = datasets.filter((d) => d.name.startsWith('parking.'));
        if (parking.length === 0) {
          body.append(el('p', { class: 'muted', id: 'parking-none' }, t('parking.none')));
        } else {
          body.append(
            el('h3', {}, t('parking.lots')),
            el('ul', {}, ...parking.map((d) => el('li', {}, `${d.name}: ${int(d.rows)}`))),
          );
        }
        root.dataset.ready = 'true';
      })
      .catch((e) => body.append(el('div', { class: 'error' }, `${t('error')}: ${e.message}`)));
    return () => {};
  },
};

export default page;
