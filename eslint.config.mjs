// The JS linter (npm run lint; part of npm test): ESLint's recommended rules over the package's
// own JavaScript, with the globals each kind of file runs with.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['node_modules/', 'target/', 'guest/', 'dist/', 'fuzz/', 'npm/', '.bench-out/', '.test-out/', '**/*.d.ts'] },
  js.configs.recommended,
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
  },
  {
    // The dashboard's page: a classic script in the browser, with uPlot loaded before it.
    files: ['dashboard/public/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser, uPlot: 'readonly' } },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: { ...globals.node } },
  },
  {
    rules: {
      // `_`-prefixed names are deliberately unused (callback signatures).
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
];
