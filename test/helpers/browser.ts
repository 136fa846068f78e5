// Headless Chromium (Debian `chromium`) driven by playwright-core, for tests of real
// browser clients and pages. One launcher for every browser test: the flags that work
// on these machines (no sandbox as root, no background networking, a fake microphone),
// closed at teardown. Each launch gets a fresh temporary profile from Playwright itself,
// which refuses a --user-data-dir flag.

import { chromium, type Browser } from 'playwright-core'
import type { Test } from 'tap'
import { CHROMIUM, requireProgram } from './system.js'

export interface BrowserOptions {
  /** A WAV file the fake microphone plays (looped by Chromium); default: Chromium's built-in beep. */
  fakeMicrophoneWav?: string
}

/** Launches Chromium, or skips/fails the test when it is not installed (see system.ts). */
export async function launchBrowser (t: Pick<Test, 'skip' | 'fail' | 'teardown'>, options: BrowserOptions = {}): Promise<Browser | undefined> {
  const executablePath = requireProgram(t, CHROMIUM)
  if (executablePath === undefined) return undefined
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream'
  ]
  if (options.fakeMicrophoneWav !== undefined) args.push(`--use-file-for-fake-audio-capture=${options.fakeMicrophoneWav}`)
  // launch() gives the browser a fresh temporary profile and removes it on close (it refuses --user-data-dir).
  const browser = await chromium.launch({ executablePath, headless: true, args })
  t.teardown(async () => await browser.close())
  return browser
}
