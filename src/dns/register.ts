import { registerComponents } from '../cli/commands/daemon.js';
import { GuardComponent } from './guard-component.js';

registerComponents(() => [new GuardComponent()]);
