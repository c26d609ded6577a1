/** The in-memory Netfilter keeps the same contract as the kernel one. */
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { netfilterContract } from '../support/netfilter-contract.js';

netfilterContract('in-memory fake', () => new FakeNetfilter());
