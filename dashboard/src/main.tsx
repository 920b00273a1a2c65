import { render } from 'preact';
import { App } from './App';
import { applyTheme, loadTheme } from './theme';
import './styles.css';

// Before the first render, so the page never flashes the other theme.
applyTheme(loadTheme());
const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
