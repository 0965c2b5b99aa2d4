// Drives isomorphic-git against a gate, for the clienttest package.
//
// usage: node isogit_client.cjs CLONE_URL OPEN_PUSH_URL MAINT_PUSH_URL WORKDIR
//
// isomorphic-git is found through NODE_PATH (the test installs it with npm).
// Clones CLONE_URL into WORKDIR, commits and pushes main to OPEN_PUSH_URL
// (must succeed), commits again and pushes to MAINT_PUSH_URL (must fail).
// URLs carry HTTP credentials in their user part; isomorphic-git has no
// SSH. Prints one line per step: "ok <step>" or "error <step>: <what
// isomorphic-git reported>", and exits 0 when both pushes went as expected.
'use strict'
const fs = require('fs')
const path = require('path')
const git = require('isomorphic-git')
const http = require('isomorphic-git/http/node')

const [cloneUrl, openUrl, maintUrl, dir] = process.argv.slice(2)

// Credentials come from the URL's user part, as a web IDE's onAuth would
// give them; the URL is used without them.
function split(url) {
  const u = new URL(url)
  const auth = { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
  u.username = ''
  u.password = ''
  return { url: u.toString(), onAuth: () => auth }
}

async function commit(text) {
  fs.appendFileSync(path.join(dir, 'file.txt'), text + '\n')
  await git.add({ fs, dir, filepath: 'file.txt' })
  const author = { name: 'Test Author', email: 'author@example.com' }
  await git.commit({ fs, dir, message: text, author, committer: author })
}

async function push(url) {
  const res = await git.push({ fs, http, dir, ...split(url), ref: 'main', remoteRef: 'main' })
  const failed = Object.entries(res.refs || {}).filter(([, r]) => !r.ok)
  if (!res.ok || failed.length > 0) {
    throw new Error('rejected ' + JSON.stringify(res))
  }
}

async function step(name, fn) {
  try {
    await fn()
    console.log('ok ' + name)
    return true
  } catch (e) {
    // What an application shows its user: the error's name and message.
    console.log('error ' + name + ': ' + (e.code || e.name) + ': ' + String(e.message).split('\n').join(' | '))
    return false
  }
}

async function main() {
  if (!(await step('clone', () => git.clone({ fs, http, dir, ...split(cloneUrl), ref: 'main', singleBranch: true })))) return 1
  await commit('while open')
  if (!(await step('push-open', () => push(openUrl)))) return 1
  await commit('during maintenance')
  if (await step('push-maintenance', () => push(maintUrl))) return 1
  return 0
}

main().then(code => process.exit(code), e => { console.log('error: ' + e.stack); process.exit(2) })
