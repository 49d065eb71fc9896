// A code as its holder shows it (健康码、人才码): the QR symbol to scan, its colour or
// category in large type, the masked name and id to compare with the person, and until when
// it holds, checked against the city's signature and revocation list as a scanner would.
// `#/code?c=CB1....` opens one; a code pasted in the box is checked the same way.

import { ApiError } from '../../api';
import { dateTime, el } from '../../format';
import { t } from '../../i18n';
import type { Context, Page } from '../../page';

interface Payload {
  id: string;
  kind: string;
  value: string;
  name: string;
  id_number: string;
  valid_until: string;
}

interface Verdict {
  valid: boolean;
  payload?: Payload;
  refused?: string;
}

const page: Page = {
  id: 'code',
  label: 'nav.code',
  mount(root: HTMLElement, ctx: Context) {
    const { api } = ctx;
    const input = el('textarea', { id: 'code-input', rows: '3', placeholder: 'CB1.…' });
    const check = el('button', { id: 'code-check' }, t('code.check'));
    const result = el('div', { id: 'code-result', class: 'code-result' });
    root.append(
      el(
        'div',
        { class: 'traffic' },
        el('section', { class: 'card wide' }, el('h2', {}, t('code.title')), el('p', { class: 'muted' }, t('code.help')), input, check, result),
      ),
    );
    let objectUrl: string | null = null;
    const show = async (code: string) => {
      root.removeAttribute('data-ready');
      result.replaceChildren(el('p', { class: 'muted' }, t('code.checking')));
      try {
        const verdict = await api.post<Verdict>('/api/v1/services/codes/verify', { code });
        if (!verdict.valid || !verdict.payload) {
          result.replaceChildren(
            el('div', { class: 'code-card code-refused', 'data-valid': 'false', 'data-refused': verdict.refused ?? '' }, t(`code.refused.${verdict.refused ?? 'malformed'}`)),
          );
          return;
        }
        const p = verdict.payload;
        const svg = await api.text(`/api/v1/services/codes/qr?format=svg&code=${encodeURIComponent(code)}`);
        if (objectUrl) URL.revokeObjectURL(objectUrl);
        objectUrl = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
        const level = p.kind === 'health' ? p.value : 'talent';
        result.replaceChildren(
          el(
            'div',
            { class: `code-card code-${level}`, 'data-valid': 'true', 'data-kind': p.kind, 'data-value': p.value },
            el('img', { class: 'code-qr', src: objectUrl, alt: t(`code.kind.${p.kind}`) }),
            el('div', { class: 'code-value' }, p.kind === 'health' ? t(`code.health.${p.value}`) : `${t('code.kind.talent')} ${p.value}`),
            el('div', {}, `${p.name} · ${p.id_number}`),
            el('div', { class: 'muted' }, `${t('code.until')} ${dateTime(p.valid_until)} · ${p.id}`),
          ),
        );
      } catch (e) {
        result.replaceChildren(el('p', { class: 'error' }, e instanceof ApiError ? e.message : String(e)));
      } finally {
        root.dataset.ready = 'true';
      }
    };
    check.addEventListener('click', () => void show(input.value.trim()));
    const given = ctx.params.get('c');
    if (given) {
      input.value = given;
      void show(given);
    } else {
      result.replaceChildren(el('p', { class: 'muted' }, t('code.none')));
      root.dataset.ready = 'true';
    }
    return () => {
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  },
};

export default page;
