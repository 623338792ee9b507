/**
 * Headless Chromium for the console's browser tests: Debian's /usr/bin/chromium (or
 * KVD_TEST_CHROMIUM) driven by playwright-core, with the flags this machine needs (no sandbox as
 * root, no GPU, no QUIC, no background network traffic) and a fresh profile per launch.
 * {@link chromiumMissing} tells the tests to skip, with the reason, when it is not installed.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.KVD_TEST_CHROMIUM ?? '/usr/bin/chromium';
/** The built console (npm run build). */
export const CONSOLE_DIR = fileURLToPath(new URL('../../../console/', import.meta.url));

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  if (!existsSync(CHROMIUM_PATH)) return `the console's browser tests need Chromium at ${CHROMIUM_PATH} (apt-get install -y --no-install-recommends chromium; .ci/run installs it)`;
  if (!existsSync(CONSOLE_DIR)) return `the console is not built at ${CONSOLE_DIR} (npm run build)`;
  return undefined;
}

/** Launches headless Chromium (playwright gives every launch a new temporary profile). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
