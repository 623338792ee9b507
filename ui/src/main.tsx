/** Entry point of the kvd web console (bundled by scripts/build-ui.mjs, served at /ui/). */
import { render } from 'preact';
import { App } from './app.js';
import './styles.css';

const root = document.getElementById('app');
if (root !== null) {
  root.textContent = '';
  render(<App />, root);
}
