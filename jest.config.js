// ESM TypeScript under jest: ts-jest transpiles each file on its own (isolatedModules);
// `npm run typecheck` is the type check, so tests start fast.
/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
  },
  // Kernel tests share the host's netfilter modules and namespaces; two workers keep the
  // suite quick on two cores without tests tripping over the xtables lock.
  maxWorkers: 2,
  testTimeout: 60000,
};
