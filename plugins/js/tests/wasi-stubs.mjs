// Module hooks for the native SDK tests: the `wasi:` and `switchboard:` imports exist only
// inside a component, so here they resolve to small stand-ins.
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('wasi:cli/environment')) {
    return { url: 'data:text/javascript,export function getEnvironment() { return [["PREFIX", "set"]]; }', shortCircuit: true };
  }
  if (specifier.startsWith('switchboard:plugin/tls@')) {
    const session = { serverName: 'localhost', alpn: 'h2', version: 'TLSv1.3', cipherSuite: 'TLS13_AES_128_GCM_SHA256' };
    return { url: `data:text/javascript,export function session() { return ${JSON.stringify(session)}; }`, shortCircuit: true };
  }
  return next(specifier, context);
}
