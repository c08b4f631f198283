// ESLint flat config: neostandard with TypeScript, plus the project's own rules
// (node: protocol imports; only src/cli.ts may call process.exit).
import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'bench/.out/**', 'test-output/**'] }),
  {
    rules: {
      'n/prefer-node-protocol': 'error',
      'n/no-process-exit': 'error',
      // `void promise` marks a deliberately floating promise (its errors are handled inside).
      'no-void': ['error', { allowAsStatement: true }],
      // A template literal may hold JSON or quotes without escaping.
      '@stylistic/quotes': ['error', 'single', { avoidEscape: true, allowTemplateLiterals: true }],
    },
  },
  {
    // Tests write config files with literal `${VAR}` placeholders on purpose.
    files: ['test/**'],
    rules: { 'no-template-curly-in-string': 'off' },
  },
  {
    files: ['src/cli.ts', 'scripts/**', 'bench/**', 'examples/**', 'test/**/fixtures/**'],
    rules: { 'n/no-process-exit': 'off' },
  },
]
