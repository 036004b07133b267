// Start a real unleash-server for the tests: its database, port and admin token come from the
// environment (UNLEASH_DB_URL, UNLEASH_PORT, UNLEASH_ADMIN_TOKEN); the tests own its lifetime.
const unleash = require('unleash-server');

const db = new URL(process.env.UNLEASH_DB_URL);
unleash
  .start({
    db: {
      host: db.hostname,
      port: Number(db.port),
      user: decodeURIComponent(db.username),
      password: decodeURIComponent(db.password),
      database: db.pathname.slice(1),
      ssl: false,
    },
    server: { port: Number(process.env.UNLEASH_PORT), host: '127.0.0.1' },
    authentication: {
      type: 'open-source',
      initApiTokens: [
        {
          environment: '*',
          project: '*',
          secret: process.env.UNLEASH_ADMIN_TOKEN,
          type: 'admin',
          tokenName: 'rollout-tests',
        },
      ],
    },
    logLevel: 'warn',
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
