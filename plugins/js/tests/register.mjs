// `node --import ./plugins/js/tests/register.mjs --test plugins/js/tests/`: installs wasi-stubs.mjs.
import { register } from 'node:module';

register('./wasi-stubs.mjs', import.meta.url);
