import { registerComponents } from '../cli/commands/daemon.js';
import { ServiceWatch } from './service-watch.js';

registerComponents(() => [new ServiceWatch()]);
