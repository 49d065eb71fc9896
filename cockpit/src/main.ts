// The cockpit shell: sign-in, navigation, language, and the one live feed the pages share.

import './style.css';
import { Api, ApiError, storedToken, storeToken, takeTokenFromFragment, type Whoami } from './api';
import { type City, dateTime, el, setCity } from './format';
import { lang, setLang, t } from './i18n';
import { LiveFeed } from './live';
import type { Context } from './page';
import { pages } from './pages';

const app = document.getElementById('app')!;

function route(): { id: string; params: URLSearchParams } {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const id = pages.some((p) => p.id === path) ? path : pages[0].id;
  return { id, params: new URLSearchParams(query ?? '') };
}

function signIn(message?: string): void {
  const input = el('input', { type: 'password', id: 'token', autocomplete: 'off', placeholder: 'cbt_…' });
  const form = el(
    'form',
    { class: 'login' },
    el('h1', {}, t('login.title')),
    el('label', { for: 'token' }, t('login.token')),
    input,
    el('p', { class: 'muted' }, t('login.help')),
    message ? el('p', { class: 'error' }, message) : '',
    el('button', { type: 'submit' }, t('login.submit')),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    storeToken(input.value.trim());
    void start();
  });
  app.replaceChildren(form);
  input.focus();
}

let live: LiveFeed | null = null;

async function start(): Promise<void> {
  takeTokenFromFragment();
  setLang(lang());
  const token = storedToken();
  if (!token) return signIn();
  const api = new Api(token);
  let whoami: Whoami;
  let city: City;
  try {
    whoami = await api.get<Whoami>('/api/v1/whoami');
    city = await api.get<City>('/api/v1/city');
    setCity(city);
  } catch (e) {
    storeToken(null);
    return signIn(e instanceof ApiError ? `${t('login.failed')}: ${e.message}` : String(e));
  }
  live?.close();
  live = new LiveFeed(api);
  const feed = live;

  const nav = el('nav');
  const streamTime = el('span', { class: 'stream-time' });
  const langButton = el('button', { type: 'button', id: 'lang', class: 'ghost' });
  const out = el('button', { type: 'button', class: 'ghost' });
  const who = el('span', { class: 'who' });
  const header = el(
    'header',
    {},
    el('div', { class: 'brand' }, el('span', { class: 'logo' }, '◉'), el('span', { id: 'title' })),
    nav,
    el('div', { class: 'tools' }, streamTime, who, langButton, out),
  );
  const main = el('main');
  app.replaceChildren(header, main);

  let unmount: (() => void) | null = null;
  const render = () => {
    unmount?.();
    main.replaceChildren();
    main.removeAttribute('data-ready');
    const { id, params } = route();
    // The city's own name before the product's: a cockpit shows whose city it is.
    const cityName = lang() === 'zh' ? (city.name_zh ?? city.name) : city.name;
    const title = `${cityName} · ${t('title')}`;
    document.getElementById('title')!.textContent = title;
    document.title = title;
    langButton.textContent = t('lang.switch');
    out.textContent = t('signout');
    who.textContent = `${whoami.name} · ${whoami.department}`;
    showStreamTime();
    nav.replaceChildren(
      ...pages.map((p) =>
        el('a', { href: `#/${p.id}`, class: p.id === id ? 'active' : '', 'data-page': p.id }, t(p.label)),
      ),
    );
    const page = pages.find((p) => p.id === id)!;
    main.dataset.page = id;
    const ctx: Context = {
      api,
      live: feed,
      whoami,
      params,
      navigate: (r) => {
        location.hash = `#/${r}`;
      },
    };
    unmount = page.mount(main, ctx);
  };
  const showStreamTime = () => {
    const at = feed.latest?.at;
    streamTime.textContent = at ? `${t('kpi.at')} ${dateTime(at)}` : '';
  };
  feed.on((event) => {
    if (event.type === 'live') showStreamTime();
  });
  langButton.addEventListener('click', () => {
    setLang(lang() === 'en' ? 'zh' : 'en');
    render();
  });
  out.addEventListener('click', () => {
    storeToken(null);
    feed.close();
    unmount?.();
    signIn();
  });
  window.onhashchange = render;
  render();
}

void start();
