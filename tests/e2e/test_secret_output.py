"""Secrets nobody marked, in what real commands print: `env`, `cat .env`, a
`pm2 jlist`-style JSON document with an escaped nested env, `docker inspect`'s
"Env" array, a YAML config, a PEM private key, URLs with a token query and a
raw '@' in the password, and `--password VALUE` in an argv.  Each planted
value must be absent from runbook's stdout and stderr, from the transcript
and from `runbook report`'s output, while the parts that are no secret (the
host, the key names) stay visible."""
import json
import os
import subprocess

from harness import RunbookTestCase

HEADER = 'runbook { name = "secret-output", title = "planted secrets", severity = "P3" }\n'


def lua_str(s):
    return json.dumps(s)


class SecretOutput(RunbookTestCase):
    def run_steps(self, body, env=None):
        """Run a runbook whose one step is body; return what the operator saw,
        the transcript's text and the report's text."""
        rb = self.write("secret-output.lua", HEADER + 'step("show", function()\n' + body + "\nend)\n")
        t = self.path("t.jsonl")
        p = self.run_rb("run", rb, "--yes", "--transcript", t, env=env)
        self.assertExit(p, 0)
        with open(t) as f:
            record = f.read()
        v = self.run_rb("verify", t)
        self.assertExit(v, 0)
        r = self.run_rb("report", t)
        self.assertExit(r, 0)
        return p.stdout + p.stderr, record, r.stdout

    def assertHidden(self, outputs, planted, visible):
        screen, record, report = outputs
        for where, text in (("screen", screen), ("transcript", record), ("report", report)):
            for s in planted:
                self.assertNotIn(s, text, f"planted secret {s!r} reached the {where}:\n{text}")
        for s in visible:
            self.assertIn(s, screen, f"expected {s!r} still visible on screen:\n{screen}")
            self.assertIn(s, record, f"expected {s!r} still visible in the transcript")

    def test_env_output(self):
        planted = {
            "DB_PASSWORD": "pw-Env-7731",
            "MYSQL_ROOT_PASSWORD": "correct horse battery",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG",
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7PLANTED",
            "GITHUB_TOKEN": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "SLACK_HOOK_ID": "xoxb-123456789012-PlantedSlack",
            "STRIPE": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "AUTH": "basic-Planted-Auth",
            "DB_PASS": "short-Pass-55",
        }
        env = dict(planted, PLAIN_HOST="db.internal", AUTHOR="jane-doe", PASSENGER_COUNT="3")
        out = self.run_steps('exec{"env", readonly = true}', env=env)
        self.assertHidden(out, [v for v in planted.values()] + ["battery"],
                          ["DB_PASSWORD=", "MYSQL_ROOT_PASSWORD=", "GITHUB_TOKEN=", "SLACK_HOOK_ID=xoxb-",
                           "PLAIN_HOST=db.internal", "AUTHOR=jane-doe", "PASSENGER_COUNT=3"])

    def test_cat_dotenv(self):
        self.write(".env", "# app settings\n"
                   "DATABASE_URL=postgres://app:Url-Pw-3391@db.internal:5432/orders\n"
                   "export API_KEY=ak-Dotenv-2024\n"
                   "SECRET_KEY_BASE=\"quoted secret value\"\n"
                   "STRIPE_SECRET='sk_test_51HPlantedKey99'\n"
                   "REDIS_HOST=cache.internal\n")
        out = self.run_steps('exec{"cat", ".env", readonly = true}')
        self.assertHidden(out, ["Url-Pw-3391", "ak-Dotenv-2024", "quoted secret value",
                                "sk_test_51HPlantedKey99", "51HPlantedKey99"],
                          ["postgres://app:", "@db.internal:5432/orders", "export API_KEY=",
                           "SECRET_KEY_BASE=", "REDIS_HOST=cache.internal"])

    def test_pm2_and_docker_json(self):
        nested = json.dumps({"DB_PASSWORD": "pw-Nested-\"q-8812", "NODE_ENV": "production"})
        doc = [{
            "name": "api", "pm_id": 0,
            "pm2_env": {
                "status": "online", "PORT": "3000",
                "env": {"DB_PASSWORD": "pw-Pm2-5521", "JWT_SECRET": "jwt-Pm2-Secret",
                        "HOST": "db.internal"},
                "env_json": nested,
                "Env": ["SESSION_KEY=sess-Docker-0042", "PATH=/usr/local/bin"],
            },
        }]
        self.write("jlist.json", json.dumps(doc))
        out = self.run_steps('exec{"cat", "jlist.json", readonly = true}')
        self.assertHidden(out, ["pw-Pm2-5521", "jwt-Pm2-Secret", "pw-Nested-", "q-8812",
                                "sess-Docker-0042"],
                          ["DB_PASSWORD", "JWT_SECRET", "db.internal", "NODE_ENV", "production",
                           "SESSION_KEY=", "PATH=/usr/local/bin"])

    def test_yaml_config(self):
        self.write("config.yml", "database:\n"
                   "  host: db.internal\n"
                   "  port: 5432\n"
                   "  user: app\n"
                   "  password: yaml-Pw-7419\n"
                   "api:\n"
                   "  api_key: 'yaml-Key-3302'\n"
                   "  token: \"yaml-Tok-1180\"\n"
                   "author: jane\n")
        out = self.run_steps('exec{"cat", "config.yml", readonly = true}')
        self.assertHidden(out, ["yaml-Pw-7419", "yaml-Key-3302", "yaml-Tok-1180"],
                          ["host: db.internal", "port: 5432", "user: app", "password:", "api_key:",
                           "author: jane"])

    def test_pem_private_key_file(self):
        key = self.path("key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
                        "-out", key], check=True, capture_output=True)
        with open(key) as f:
            body = [l for l in f.read().splitlines() if l and not l.startswith("-----")]
        self.assertGreater(len(body), 5, "expected a multi-line key body")
        out = self.run_steps('exec{"cat", "key.pem", readonly = true}')
        self.assertHidden(out, body, ["-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"])

    def test_urls_and_tokens_in_a_log(self):
        jwt = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkLXVzZXIifQ."
               "Planted_JwtSignature_0123456789abcdef")
        self.write("app.log",
                   "connecting to postgres://app:p@ss-Url-6610@db.internal:5432/orders\n"
                   "GET https://api.example.com/v1/items?access_token=tok-Query-4471&page=2\n"
                   "GET https://bucket.s3.amazonaws.com/o?X-Amz-Signature=sig-Amz-5123&X-Amz-Date=20261201\n"
                   f"Authorization header was Bearer {jwt}\n")
        out = self.run_steps('exec{"cat", "app.log", readonly = true}')
        self.assertHidden(out, ["p@ss-Url-6610", "ss-Url-6610", "tok-Query-4471", "sig-Amz-5123",
                                jwt, "Planted_JwtSignature"],
                          ["postgres://app:", "@db.internal:5432/orders", "api.example.com",
                           "page=2", "X-Amz-Date=20261201"])

    def test_password_flag_with_separate_value(self):
        out = self.run_steps('exec{"echo", "--password", "pw-Argv-9034", "--api-key", "ak-Argv-1277",\n'
                             '  "--host", "db.internal", readonly = true}\n'
                             'sh("echo mysql --user root --token tok-Sh-4420 --port 3306", { readonly = true })')
        self.assertHidden(out, ["pw-Argv-9034", "ak-Argv-1277", "tok-Sh-4420"],
                          ["--password", "--api-key", "--host", "db.internal", "--user root", "--port 3306"])
        record = out[1]
        argv = [json.loads(l)["args"]["argv"] for l in record.splitlines()
                if json.loads(l)["event"] == "call" and json.loads(l)["primitive"] == "exec"]
        self.assertEqual(argv[0], ["echo", "--password", "***", "--api-key", "***", "--host", "db.internal"])

    def test_log_and_error_messages_are_redacted_too(self):
        out = self.run_steps(f'log.info("loaded DB_PASSWORD=%s", {lua_str("pw-Log-3008")})\n'
                             'log.warn("retrying https://h.example.com/?token=tok-Warn-2211")')
        self.assertHidden(out, ["pw-Log-3008", "tok-Warn-2211"], ["DB_PASSWORD=", "h.example.com"])
        self.assertTrue(os.path.exists(self.path("t.jsonl")))

    def test_pm2_ecosystem_file_xml_and_client_command_lines(self):
        """A drill on a PM2 stack showed these in clear: a real ecosystem
        file's JavaScript object literals, an XML config, and the password
        flags of redis-cli, mysql, curl and sshpass."""
        self.write("ecosystem.config.js",
                   "module.exports = {\n"
                   "  apps: [{\n"
                   "    name: 'api', script: 'server.js', instances: 1,\n"
                   "    env: { NODE_ENV: 'production', PORT: 3000, DB_PASSWORD: 'drillpw_Xk29',\n"
                   "      DB_HOST: 'db.internal', password: \"js-Pw-5120\", \"API_TOKEN\": 'js-Tok-7781' },\n"
                   "    env_staging: {SESSION_SECRET:'js-Sess-3349', author: 'jane'},\n"
                   "  }],\n"
                   "};\n")
        # the file is one pm2 loads: node reads the same env back from it
        node = subprocess.run(["node", "-e", "const a = require(process.argv[1]).apps[0];"
                               "console.log(a.env.DB_PASSWORD, a.env_staging.SESSION_SECRET)",
                               self.path("ecosystem.config.js")], capture_output=True, text=True, timeout=30)
        self.assertEqual(node.stdout.strip(), "drillpw_Xk29 js-Sess-3349", node.stderr)
        self.write("settings.xml",
                   "<settings>\n"
                   "  <server>\n"
                   "    <id>releases</id>\n"
                   "    <username>deploy</username>\n"
                   "    <password>xml-Pw-6604</password>\n"
                   "  </server>\n"
                   "  <secret>xml-Sec-1932</secret><apiKey>xml-Key-2287</apiKey>\n"
                   "  <author>jane</author>\n"
                   "</settings>\n")
        lines = ["redis-cli -h 127.0.0.1 -p 6379 -a cli-Redis-4410 ping",
                 "redis-cli --pass cli-Redis-4411 info",
                 "mysql -uroot -pcli-Mysql-4420 orders",
                 "mysqldump --password=cli-Mysql-4421 orders",
                 "curl -fsS -u admin:cli-Curl-4430 https://h.internal/",
                 "curl --user admin:cli-Curl-4431 https://h.internal/",
                 "sshpass -p cli-Sshpass-4440 ssh -p 2222 app@h.internal",
                 "PGPASSWORD=cli-Pg-4450 psql -h db.internal -p 5432 -U app"]
        body = ('exec{"cat", "ecosystem.config.js", readonly = true}\n'
                'exec{"cat", "settings.xml", readonly = true}\n')
        for l in lines:
            body += f'exec{{"sh", "-c", {lua_str("echo " + l)}, readonly = true}}\n'
        out = self.run_steps(body)
        self.assertHidden(out, ["drillpw_Xk29", "js-Pw-5120", "js-Tok-7781", "js-Sess-3349",
                                "xml-Pw-6604", "xml-Sec-1932", "xml-Key-2287",
                                "cli-Redis-4410", "cli-Redis-4411", "cli-Mysql-4420", "cli-Mysql-4421",
                                "cli-Curl-4430", "cli-Curl-4431", "cli-Sshpass-4440", "cli-Pg-4450"],
                          ["DB_PASSWORD: '", "NODE_ENV: 'production'", "DB_HOST: 'db.internal'",
                           "author: 'jane'", "<username>deploy</username>", "<password>", "</password>",
                           "<author>jane</author>", "-p 6379 -a ", "-uroot -p", "-u admin:",
                           "ssh -p 2222 app@h.internal", "PGPASSWORD="])
