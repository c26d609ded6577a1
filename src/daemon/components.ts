/**
 * The daemon's components, in start order. Each issue's module registers its
 * components here, so the daemon never imports them directly. One import per
 * line; keep this file trivial.
 */
import '../dns/register.js';
import '../monitor/register.js';
import './register.js';
