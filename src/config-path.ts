/** Where the configuration is unless --config says otherwise (no schema: --help needs only this). */
export const DEFAULT_CONFIG_FILE = '/etc/traceable-nat/config.yaml';
