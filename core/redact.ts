/**
 * Removes credentials from text that may reach a log, an error, a state output or Slack:
 * passwords in URLs, Slack webhook paths, and every secret value the process has read.
 */
const knownSecrets = new Set<string>()

/** Registers a secret value so that {@link redact} masks it wherever it appears. */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < 4) return
  knownSecrets.add(value)
  try {
    const url = new URL(value)
    if (url.password) knownSecrets.add(decodeURIComponent(url.password))
    if (url.password) knownSecrets.add(url.password)
  } catch {
    // not a URL: the value itself is the secret
  }
}

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/\s:@]+):([^@\s/]+)@/gi
const SLACK_HOOK = /(hooks\.slack\.com\/services\/)[A-Za-z0-9/_-]+/g
const PASSWORD_PARAM = /(password|passwd|pwd|token|secret)=([^&\s'"]+)/gi

/** Returns `text` with every known secret and credential pattern replaced by `***`. */
export function redact(text: string): string {
  let out = text
    .replace(URL_CREDENTIALS, '$1$2:***@')
    .replace(SLACK_HOOK, '$1***')
    .replace(PASSWORD_PARAM, '$1=***')
  for (const secret of knownSecrets) out = out.split(secret).join('***')
  return out
}
