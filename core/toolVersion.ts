import pkg from '../package.json' with { type: 'json' }

/** langsight-backup's own version, recorded in every manifest. */
export const TOOL_VERSION: string = `langsight-backup ${pkg.version}`
