// The page's sample function: declared in Settings, called by the agent, answered by
// the page with a FunctionCallResponse. It needs no network, so the round trip is all
// there is to see.

/** Named so that "What's the local time? City: Tokyo" reaches it on the simulator too. */
export const LOCAL_TIME = Object.freeze({
  name: 'local_time',
  description: 'The current local time in a city. Call it whenever the user asks what time it is somewhere.',
  parameters: {
    type: 'object',
    properties: {
      city: { type: 'string', description: 'The city, e.g. Tokyo' },
      timezone: { type: 'string', description: 'The IANA time zone of that city, e.g. Asia/Tokyo' }
    },
    required: ['city']
  }
})

// For calls that name a city without its time zone (the simulator sends only what the user typed).
const CITY_TIME_ZONES = new Map(Object.entries({
  amsterdam: 'Europe/Amsterdam',
  athens: 'Europe/Athens',
  auckland: 'Pacific/Auckland',
  bangkok: 'Asia/Bangkok',
  berlin: 'Europe/Berlin',
  'buenos aires': 'America/Argentina/Buenos_Aires',
  cairo: 'Africa/Cairo',
  chicago: 'America/Chicago',
  delhi: 'Asia/Kolkata',
  dubai: 'Asia/Dubai',
  'hong kong': 'Asia/Hong_Kong',
  istanbul: 'Europe/Istanbul',
  jakarta: 'Asia/Jakarta',
  johannesburg: 'Africa/Johannesburg',
  lagos: 'Africa/Lagos',
  lisbon: 'Europe/Lisbon',
  london: 'Europe/London',
  'los angeles': 'America/Los_Angeles',
  madrid: 'Europe/Madrid',
  'mexico city': 'America/Mexico_City',
  moscow: 'Europe/Moscow',
  mumbai: 'Asia/Kolkata',
  nairobi: 'Africa/Nairobi',
  'new york': 'America/New_York',
  paris: 'Europe/Paris',
  rome: 'Europe/Rome',
  'san francisco': 'America/Los_Angeles',
  'são paulo': 'America/Sao_Paulo',
  'sao paulo': 'America/Sao_Paulo',
  seoul: 'Asia/Seoul',
  singapore: 'Asia/Singapore',
  sydney: 'Australia/Sydney',
  tokyo: 'Asia/Tokyo',
  toronto: 'America/Toronto',
  vancouver: 'America/Vancouver'
}))

/**
 * The answer to one call, as the text sent back in `FunctionCallResponse.content`:
 * a short sentence the agent can say, or one saying what went wrong (the agent can
 * explain that too; a call must never stay unanswered).
 */
export function answerLocalTime (argumentsJson, now = new Date()) {
  let args
  try {
    args = JSON.parse(argumentsJson)
  } catch {
    return 'Error: the arguments were not JSON.'
  }
  const city = typeof args?.city === 'string' ? args.city.trim() : ''
  if (city === '') return 'Error: no city was given.'
  const timeZone = typeof args.timezone === 'string' && args.timezone !== '' ? args.timezone : CITY_TIME_ZONES.get(city.toLowerCase())
  if (timeZone === undefined) return `Error: the time zone of ${city} is unknown; give its IANA time zone.`
  try {
    const time = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit' }).format(now)
    const weekday = new Intl.DateTimeFormat('en-GB', { timeZone, weekday: 'long' }).format(now)
    return `${time} on ${weekday} in ${city} (${timeZone})`
  } catch {
    return `Error: "${timeZone}" is not a time zone.`
  }
}
