import { beforeEach, describe, expect, it } from 'vitest';
import { forgetKey, loadKey, parsePastedKey } from '../src/auth';
import { href, parseRoute } from '../src/router';

describe('the key in the URL fragment', () => {
  beforeEach(() => {
    forgetKey();
    window.history.replaceState(null, '', '/');
  });

  it('is taken, kept in sessionStorage and removed from the address bar', () => {
    window.history.replaceState(null, '', '/#token=abc123def456ghi789');
    expect(loadKey()).toBe('abc123def456ghi789');
    expect(window.location.href).not.toContain('abc123');
    expect(window.location.hash).toBe('#/');
    expect(window.sessionStorage.getItem('sentry.apiKey')).toBe('abc123def456ghi789');
    // A reload (no fragment any more) still has it.
    expect(loadKey()).toBe('abc123def456ghi789');
  });

  it('keeps a route given after the key', () => {
    window.history.replaceState(null, '', '/#/runs/4&token=k3y-k3y-k3y-k3y-k3y');
    expect(loadKey()).toBe('k3y-k3y-k3y-k3y-k3y');
    expect(window.location.hash).toBe('#/runs/4');
  });

  it('is absent without a fragment or storage', () => {
    expect(loadKey()).toBeUndefined();
  });

  it('can be pasted alone or as the whole printed URL', () => {
    expect(parsePastedKey('  s3cr3t  ')).toBe('s3cr3t');
    expect(parsePastedKey('http://127.0.0.1:3001/#token=s3cr3t')).toBe('s3cr3t');
  });
});

describe('routes', () => {
  it('round-trip through the fragment', () => {
    for (const hash of ['#/runs', '#/runs/12', '#/incidents?run=3&kind=output_loop&action=kill', '#/audit']) {
      expect(href(parseRoute(hash))).toBe(hash);
    }
    expect(parseRoute('')).toEqual({ page: 'runs' });
    expect(parseRoute('#/nope')).toEqual({ page: 'not-found', path: '/nope' });
  });
});
