/**
 * kvctl's `user`, `role` and `auth` commands with etcdctl 3.4's syntax, argument checks and
 * output (etcdctl/ctlv3/command/{user,role,auth}_command.go and printer_simple.go). Passwords
 * come from `user:password`, `--new-user-password`, or stdin with `--interactive=false` (kvctl
 * never prompts on a terminal).
 */
import type { Command } from 'commander';
import { prefixEnd, type Client, type Permission } from '../../src/client/index.js';
import { CliError, ExitCode, out, readStdin, type Settings } from './context.js';

type Action = (settings: Settings, client: Client, args: string[], flags: Record<string, unknown>) => Promise<void>;
type Run = (action: Action) => (...parameters: unknown[]) => Promise<void>;

function onlySimple(settings: Settings): void {
  if (settings.format !== 'simple') throw new CliError(`${settings.format} not supported as output format for auth commands (kvctl prints them in the simple format only)`, ExitCode.badFeature);
}

/** etcdctl's --interactive flag: "true" unless "false". */
function interactive(flags: Record<string, unknown>): boolean {
  const value = flags.interactive;
  return !(value === false || value === 'false');
}

/** A password read as etcdctl's fmt.Scanf("%s"): the first word of stdin. */
async function passwordFromStdin(): Promise<string> {
  const text = await readStdin();
  return text.trim().split(/\s+/)[0] ?? '';
}

// ───────────────────────────── user ─────────────────────────────

const userAdd: Action = async (settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('user add command requires user name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  let user = args[0];
  let password = '';
  // commander reads --no-password as the negation of a `password` option.
  const noPassword = flags.password === false;
  if (!noPassword) {
    const fromFlag = typeof flags.newUserPassword === 'string' ? flags.newUserPassword : '';
    if (fromFlag !== '') {
      password = fromFlag;
    } else {
      const colon = args[0].indexOf(':');
      if (colon < 0) {
        if (interactive(flags)) throw new CliError('kvctl does not prompt for passwords: use user:password, --new-user-password or --interactive=false with the password on stdin', ExitCode.badArgs);
        password = await passwordFromStdin();
      } else {
        user = args[0].slice(0, colon);
        password = args[0].slice(colon + 1);
        if (user.length === 0) throw new CliError('empty user name is not allowed', ExitCode.badArgs);
      }
    }
  }
  await client.auth.userAdd(user, password, { noPassword });
  await out(`User ${user} created\n`);
};

const userDelete: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('user delete command requires user name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  await client.auth.userDelete(args[0]);
  await out(`User ${args[0]} deleted\n`);
};

const userGet: Action = async (settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('user get command requires user name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  const { roles } = await client.auth.userGet(args[0]);
  if (flags.detail === true) {
    let text = `User: ${args[0]}\n`;
    for (const role of roles) {
      text += '\n';
      text += formatRoleGet(role, (await client.auth.roleGet(role)).permissions);
    }
    await out(text);
    return;
  }
  await out(`User: ${args[0]}\nRoles:${roles.map((role) => ` ${role}`).join('')}\n`);
};

const userList: Action = async (settings, client, args) => {
  if (args.length !== 0) throw new CliError('user list command requires no arguments', ExitCode.badArgs);
  onlySimple(settings);
  const { users } = await client.auth.userList();
  await out(users.map((user) => `${user}\n`).join(''));
};

const userPasswd: Action = async (settings, client, args, flags) => {
  if (args.length !== 1) throw new CliError('user passwd command requires user name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  if (interactive(flags)) throw new CliError('kvctl does not prompt for passwords: use --interactive=false with the password on stdin', ExitCode.badArgs);
  await client.auth.userChangePassword(args[0], await passwordFromStdin());
  await out('Password updated\n');
};

const userGrantRole: Action = async (settings, client, args) => {
  if (args.length !== 2) throw new CliError('user grant command requires user name and role name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  await client.auth.userGrantRole(args[0], args[1]);
  await out(`Role ${args[1]} is granted to user ${args[0]}\n`);
};

const userRevokeRole: Action = async (settings, client, args) => {
  if (args.length !== 2) throw new CliError('user revoke-role requires user name and role name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  await client.auth.userRevokeRole(args[0], args[1]);
  await out(`Role ${args[1]} is revoked from user ${args[0]}\n`);
};

// ───────────────────────────── role ─────────────────────────────

/** etcdctl's RoleGet printer. */
export function formatRoleGet(role: string, permissions: readonly Permission[]): string {
  const line = (permission: Permission): string => {
    const key = permission.key.toString('latin1');
    if (permission.rangeEnd.length === 0) return `\t${key}\n`;
    const end = permission.rangeEnd.toString('latin1');
    let text = end !== '\0' ? `\t[${key}, ${end})` : `\t[${key}, <open ended>`;
    if (prefixEnd(Buffer.from(permission.key)).toString('latin1') === end) text += ` (prefix ${key})`;
    return `${text}\n`;
  };
  let text = `Role ${role}\nKV Read:\n`;
  for (const permission of permissions) if (permission.type !== 'write') text += line(permission);
  text += 'KV Write:\n';
  for (const permission of permissions) if (permission.type !== 'read') text += line(permission);
  return text;
}

/** etcdctl's permRange: the key and range end of a role grant or revoke, from args and --prefix/--from-key. */
export function permissionRange(args: readonly string[], flags: { prefix: boolean; fromKey: boolean }): { key: string; rangeEnd: string } {
  let key = args[0];
  if (key.length === 0) {
    if (flags.prefix && flags.fromKey) throw new CliError('--from-key and --prefix flags are mutually exclusive', ExitCode.badArgs);
    // The empty prefix, which matches every key, is ["\x00", <open end>) on the server.
    key = '\0';
    return { key, rangeEnd: flags.prefix || flags.fromKey ? '\0' : '' };
  }
  if (args.length === 1) {
    if (flags.prefix) {
      if (flags.fromKey) throw new CliError('--from-key and --prefix flags are mutually exclusive', ExitCode.badArgs);
      return { key, rangeEnd: prefixEnd(Buffer.from(key, 'latin1')).toString('latin1') };
    }
    return { key, rangeEnd: flags.fromKey ? '\0' : '' };
  }
  if (flags.prefix) throw new CliError('unexpected endkey argument with --prefix flag', ExitCode.badArgs);
  if (flags.fromKey) throw new CliError('unexpected endkey argument with --from-key flag', ExitCode.badArgs);
  return { key, rangeEnd: args[1] };
}

const PERMISSION_TYPES: Record<string, Permission['type']> = { READ: 'read', WRITE: 'write', READWRITE: 'readwrite' };

const roleAdd: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('role add command requires role name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  await client.auth.roleAdd(args[0]);
  await out(`Role ${args[0]} created\n`);
};

const roleDelete: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('role delete command requires role name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  await client.auth.roleDelete(args[0]);
  await out(`Role ${args[0]} deleted\n`);
};

const roleGet: Action = async (settings, client, args) => {
  if (args.length !== 1) throw new CliError('role get command requires role name as its argument', ExitCode.badArgs);
  onlySimple(settings);
  const { permissions } = await client.auth.roleGet(args[0]);
  await out(formatRoleGet(args[0], permissions));
};

const roleList: Action = async (settings, client, args) => {
  if (args.length !== 0) throw new CliError('role list command requires no arguments', ExitCode.badArgs);
  onlySimple(settings);
  const { roles } = await client.auth.roleList();
  await out(roles.map((role) => `${role}\n`).join(''));
};

const roleGrantPermission: Action = async (settings, client, args, flags) => {
  if (args.length < 3) throw new CliError('role grant command requires role name, permission type, and key [endkey] as its argument', ExitCode.badArgs);
  const type = PERMISSION_TYPES[args[1].toUpperCase()];
  if (type === undefined) throw new CliError(`invalid permission type: ${args[1]}`, ExitCode.badArgs);
  const { key, rangeEnd } = permissionRange(args.slice(2), { prefix: flags.prefix === true, fromKey: flags.fromKey === true });
  onlySimple(settings);
  await client.auth.roleGrantPermission(args[0], { type, key: Buffer.from(key, 'latin1'), rangeEnd: Buffer.from(rangeEnd, 'latin1') });
  await out(`Role ${args[0]} updated\n`);
};

const roleRevokePermission: Action = async (settings, client, args, flags) => {
  if (args.length < 2) throw new CliError('role revoke-permission command requires role name and key [endkey] as its argument', ExitCode.badArgs);
  const { key, rangeEnd } = permissionRange(args.slice(1), { prefix: flags.prefix === true, fromKey: flags.fromKey === true });
  onlySimple(settings);
  await client.auth.roleRevokePermission(args[0], Buffer.from(key, 'latin1'), Buffer.from(rangeEnd, 'latin1'));
  // etcdctl prints the key as typed (args[1]) and the computed range end.
  if (rangeEnd.length === 0) await out(`Permission of key ${args[1]} is revoked from role ${args[0]}\n`);
  else if (rangeEnd !== '\0') await out(`Permission of range [${args[1]}, ${rangeEnd}) is revoked from role ${args[0]}\n`);
  else await out(`Permission of range [${args[1]}, <open ended> is revoked from role ${args[0]}\n`);
};

// ───────────────────────────── auth ─────────────────────────────

const authEnable: Action = async (_settings, client, args) => {
  if (args.length !== 0) throw new CliError('auth enable command does not accept any arguments', ExitCode.badArgs);
  // As etcdctl: a root user without the root role gets it (the role is made if missing), then enable again.
  for (let attempt = 0; ; attempt += 1) {
    try {
      await client.auth.enable();
      break;
    } catch (error: unknown) {
      if (attempt > 0 || (error as { code?: string }).code !== 'auth-root-role-missing') throw error;
      try {
        await client.auth.roleAdd('root');
      } catch (roleError: unknown) {
        if ((roleError as { code?: string }).code !== 'auth-role-exists') throw roleError;
      }
      await client.auth.userGrantRole('root', 'root');
    }
  }
  await out('Authentication Enabled\n');
};

const authDisable: Action = async (_settings, client, args) => {
  if (args.length !== 0) throw new CliError('auth disable command does not accept any arguments', ExitCode.badArgs);
  await client.auth.disable();
  await out('Authentication Disabled\n');
};

const authStatus: Action = async (_settings, client, args) => {
  if (args.length !== 0) throw new CliError('auth status command does not accept any arguments', ExitCode.badArgs);
  const status = await client.auth.status();
  await out(`Authentication Status: ${status.enabled}\nAuthRevision: ${status.authRevision}\n`);
};

/** Registers `user ...`, `role ...` and `auth enable|disable|status`. */
export function addAuthCommands(program: Command, run: Run): void {
  const user = program.command('user').description('User related commands');
  user.command('add').description('Adds a new user').argument('[user]').allowExcessArguments(true)
    .option('--interactive [bool]', 'Read password from stdin instead of interactive terminal', true)
    .option('--new-user-password <password>', 'Supply password from the command line flag', '')
    .option('--no-password', 'Create a user without password (CN based auth only)')
    .action(run(userAdd));
  user.command('delete').description('Deletes a user').argument('[user]').allowExcessArguments(true).action(run(userDelete));
  user.command('get').description('Gets detailed information of a user').argument('[user]').allowExcessArguments(true)
    .option('--detail', 'Show permissions of roles granted to the user').action(run(userGet));
  user.command('list').description('Lists all users').allowExcessArguments(true).action(run(userList));
  user.command('passwd').description('Changes password of user').argument('[user]').allowExcessArguments(true)
    .option('--interactive [bool]', 'If true, read password from stdin instead of interactive terminal', true).action(run(userPasswd));
  user.command('grant-role').description('Grants a role to a user').argument('[user]').argument('[role]').allowExcessArguments(true).action(run(userGrantRole));
  user.command('revoke-role').description('Revokes a role from a user').argument('[user]').argument('[role]').allowExcessArguments(true).action(run(userRevokeRole));

  const role = program.command('role').description('Role related commands');
  role.command('add').description('Adds a new role').argument('[role]').allowExcessArguments(true).action(run(roleAdd));
  role.command('delete').description('Deletes a role').argument('[role]').allowExcessArguments(true).action(run(roleDelete));
  role.command('get').description('Gets detailed information of a role').argument('[role]').allowExcessArguments(true).action(run(roleGet));
  role.command('list').description('Lists all roles').allowExcessArguments(true).action(run(roleList));
  role.command('grant-permission').description('Grants a key to a role').argument('[args...]').allowExcessArguments(true)
    .option('--prefix', 'grant a prefix permission')
    .option('--from-key', 'grant a permission of keys that are greater than or equal to the given key using byte compare')
    .action(run(roleGrantPermission));
  role.command('revoke-permission').description('Revokes a key from a role').argument('[args...]').allowExcessArguments(true)
    .option('--prefix', 'revoke a prefix permission')
    .option('--from-key', 'revoke a permission of keys that are greater than or equal to the given key using byte compare')
    .action(run(roleRevokePermission));

  const auth = program.command('auth').description('Enable or disable authentication');
  auth.command('enable').description('Enables authentication').allowExcessArguments(true).action(run(authEnable));
  auth.command('disable').description('Disables authentication').allowExcessArguments(true).action(run(authDisable));
  auth.command('status').description('Returns authentication status').allowExcessArguments(true).action(run(authStatus));
}
