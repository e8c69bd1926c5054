// typescript-eslint's type-aware recommended rules over the whole tree, with
// a few stricter ones where they catch real mistakes in a driver that is
// mostly async I/O (a floating promise is a lost error).
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'bench/.build/**', 'bench/results/**', 'src/csi/generated/**', 'src/csi/registration-generated/**', 'coverage/**', '.tap/**', 'test/tools/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // tap awaits its own t.test(); any other floating promise is a lost error.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // "_name" is how a destructuring says "dropped on purpose".
      '@typescript-eslint/no-unused-vars': ['error', { varsIgnorePattern: '^_', argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // Implementations of async interfaces (gRPC handlers, ports) are async
      // without awaiting: the rule would have them return Promise.resolve().
      '@typescript-eslint/require-await': 'off',
      // Rethrowing or rejecting with a caught `unknown` passes an error on unchanged.
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // One style for private members in the driver: #private (private at run time too).
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error', {
        selector: ":matches(PropertyDefinition, MethodDefinition[kind!='constructor'], TSParameterProperty)[accessibility='private']",
        message: 'Use a #private member: one style for private members in src/.',
      }],
    },
  },
  {
    // Tests read JSON the API answers and poke at internals on purpose.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
)
