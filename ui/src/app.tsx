/**
 * The console's shell: navigation, the login form (only when the server says auth is on, or a
 * call answers an auth error), and the page for the current route.
 */
import { useEffect, useState } from 'preact/hooks';
import { authenticate, authStatus } from './api/etcd.js';
import { session } from './api/gateway.js';
import { ErrorNote } from './components/common.js';
import { useSubmit } from './hooks.js';
import { href, navigate, onLinkClick, useLocation } from './router.js';
import { ClusterPage } from './pages/cluster.js';
import { KeysPage } from './pages/keys.js';
import { WatchPage } from './pages/watch.js';
import { LeasesPage } from './pages/leases.js';
import { RegistryPage } from './pages/registry.js';
import { ConfigPage } from './pages/config.js';

const PAGES = [
  { path: '/cluster', label: 'Cluster', render: () => <ClusterPage /> },
  { path: '/keys', label: 'Keys', render: () => <KeysPage /> },
  { path: '/watch', label: 'Watch', render: () => <WatchPage /> },
  { path: '/leases', label: 'Leases', render: () => <LeasesPage /> },
  { path: '/registry', label: 'Registry', render: () => <RegistryPage /> },
  { path: '/config', label: 'Config', render: () => <ConfigPage /> },
] as const;

export function App() {
  const location = useLocation();
  const [authOn, setAuthOn] = useState(false);
  const [loginNeeded, setLoginNeeded] = useState(false);
  const [user, setUser] = useState<string | undefined>(session.user);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const stop = session.subscribe((reason) => {
      if (reason === 'login-required') setLoginNeeded(true);
      setUser(session.user);
    });
    authStatus().then((answer) => setAuthOn(answer.enabled === true), (error: unknown) => void error /* older servers: no auth status; calls will say */);
    return stop;
  }, []);
  useEffect(() => {
    if (location.path === '/' || location.path === '') navigate('/cluster', { replace: true });
  }, [location.path]);
  const page = PAGES.find((candidate) => location.path === candidate.path || location.path.startsWith(`${candidate.path}/`));
  const showLogin = (authOn || loginNeeded) && session.token === undefined;
  useEffect(() => {
    document.title = `${page?.label ?? 'Not found'} · kvd console`;
  }, [page]);
  return (
    <div class="shell">
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <a class="brand" href={href('/cluster')} onClick={(event) => onLinkClick(event, '/cluster')}>kvd <span>console</span></a>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map((candidate) => (
              <li key={candidate.path}>
                <a href={href(candidate.path)} aria-current={candidate === page ? 'page' : undefined} onClick={(event) => onLinkClick(event, candidate.path)}>{candidate.label}</a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          {user === undefined ? (authOn ? <span class="muted">not logged in</span> : null) : (
            <>
              <span>{user}</span>
              <button type="button" class="link" onClick={() => { session.clear(); setLoginNeeded(authOn); }}>Log out</button>
            </>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {showLogin ? <Login onDone={() => { setLoginNeeded(false); setGeneration((value) => value + 1); }} /> : null}
        {page === undefined ? <p class="note">No such page. <a href={href('/cluster')} onClick={(event) => onLinkClick(event, '/cluster')}>Go to the cluster</a>.</p> : <div key={`${page.path}-${generation}`}>{page.render()}</div>}
      </main>
    </div>
  );
}

function Login({ onDone }: { onDone: () => void }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const { busy, error, submit } = useSubmit(async () => {
    const answer = await authenticate(name, password);
    if (answer.token === undefined) throw new Error('the server answered without a token');
    session.set(name, answer.token);
    setPassword('');
    onDone();
  });
  return (
    <section class="panel login" aria-labelledby="login-title">
      <h2 id="login-title">Log in</h2>
      <p class="muted">Authentication is on: every action runs with your user's permissions. The token stays in this tab's memory.</p>
      <form onSubmit={submit} class="form-grid">
        <label>User <input name="user" autocomplete="username" value={name} onInput={(event) => setName(event.currentTarget.value)} required /></label>
        <label>Password <input name="password" type="password" autocomplete="current-password" value={password} onInput={(event) => setPassword(event.currentTarget.value)} /></label>
        <button type="submit" class="primary" disabled={busy}>{busy ? 'Logging in…' : 'Log in'}</button>
      </form>
      <ErrorNote error={error} />
    </section>
  );
}
