/**
 * A service instance for the console's registry test: registers itself with kvd's TypeScript
 * client registry (`/registry/<service>/<id>` on a kept-alive lease), prints "registered" and
 * keeps the lease alive until it is killed.
 * Usage: node registry-instance.js <endpoints,comma,separated> <service> <id> <address> <ttl>
 */
import { connect } from '../../../src/client/index.js';

const [endpoints, service, id, address, ttl] = process.argv.slice(2);
const client = connect({ endpoints: endpoints.split(',') });
await client.registry.register({ service, id, address, ttl: Number(ttl), metadata: { version: '1.4.2', zone: 'loopback' } });
process.stdout.write('registered\n');
// Stays up (the registration's keep-alives hold the event loop) until killed.
