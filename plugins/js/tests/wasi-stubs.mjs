// Module hooks for the native SDK tests: the `wasi:` and `switchboard:` imports exist only
// inside a component, so here they resolve to small stand-ins.
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('wasi:cli/environment')) {
    return { url: 'data:text/javascript,export function getEnvironment() { return [["PREFIX", "set"]]; }', shortCircuit: true };
  }
  return next(specifier, context);
}
