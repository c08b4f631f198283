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
      // The config file's `${VAR}` expansion is written about, and tested, in plain strings.
      'no-template-curly-in-string': 'off',
      // `typeof x === spec.type` compares against a value TypeScript has already narrowed.
      'valid-typeof': ['error', { requireStringLiterals: false }],
      // It cannot see a condition changed by a callback across an `await` in the loop body.
      'no-unmodified-loop-condition': 'off',
    },
  },
  {
    // The CLI is the one place that ends the process; scripts and benchmarks are CLIs too.
    files: ['src/cli.ts', 'scripts/**', 'bench/**', 'examples/**', 'test/**/fixtures/**'],
    rules: { 'n/no-process-exit': 'off' },
  },
]
