// Drives JGit against a gate, for the clienttest package.
//
// usage: JGitClient PRIVKEY (NAME CLONE_URL OPEN_PUSH_URL MAINT_PUSH_URL WORKDIR)...
//
// For each group: clones CLONE_URL into WORKDIR, commits and pushes main
// to OPEN_PUSH_URL (must succeed), commits again and pushes to
// MAINT_PUSH_URL (must fail). HTTP URLs carry credentials in their user
// part; over SSH JGit uses JSch with the key PRIVKEY. Prints one line per
// step: "NAME ok <step>" or "NAME error <step>: <what JGit reported>", and
// exits 0 when every push went as expected. One JVM does every group: JVM
// start is slow.

import java.io.File;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.StandardOpenOption;

import com.jcraft.jsch.JSch;
import com.jcraft.jsch.JSchException;
import com.jcraft.jsch.Session;
import org.eclipse.jgit.api.Git;
import org.eclipse.jgit.api.TransportCommand;
import org.eclipse.jgit.transport.JschConfigSessionFactory;
import org.eclipse.jgit.transport.OpenSshConfig;
import org.eclipse.jgit.transport.PushResult;
import org.eclipse.jgit.transport.RefSpec;
import org.eclipse.jgit.transport.RemoteRefUpdate;
import org.eclipse.jgit.transport.SshTransport;
import org.eclipse.jgit.transport.URIish;
import org.eclipse.jgit.transport.UsernamePasswordCredentialsProvider;
import org.eclipse.jgit.util.FS;

public class JGitClient {
    private static String key;

    private static final JschConfigSessionFactory SSH = new JschConfigSessionFactory() {
        @Override
        protected void configure(OpenSshConfig.Host host, Session session) {
            session.setConfig("StrictHostKeyChecking", "no"); // a test gate's host key, on 127.0.0.1
        }

        @Override
        protected JSch createDefaultJSch(FS fs) throws JSchException {
            JSch jsch = new JSch();
            jsch.addIdentity(key);
            return jsch;
        }
    };

    private static <C extends TransportCommand<C, ?>> C auth(C cmd, String url) throws Exception {
        if (url.startsWith("ssh://")) {
            return cmd.setTransportConfigCallback(t -> ((SshTransport) t).setSshSessionFactory(SSH));
        }
        String userInfo = new URI(url).getRawUserInfo();
        if (userInfo != null) {
            String[] up = userInfo.split(":", 2);
            cmd.setCredentialsProvider(new UsernamePasswordCredentialsProvider(up[0], up.length > 1 ? up[1] : ""));
        }
        return cmd;
    }

    private static void commit(Git git, File work, String text) throws Exception {
        Files.writeString(new File(work, "file.txt").toPath(), text + "\n", StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        git.add().addFilepattern("file.txt").call();
        git.commit().setMessage(text).setAuthor("Test Author", "author@example.com")
                .setCommitter("Test Author", "author@example.com").call();
    }

    private static void push(Git git, String url) throws Exception {
        Iterable<PushResult> results = auth(git.push().setRemote(url)
                .setRefSpecs(new RefSpec("refs/heads/main:refs/heads/main")), url).call();
        for (PushResult r : results) {
            for (RemoteRefUpdate u : r.getRemoteUpdates()) {
                if (u.getStatus() != RemoteRefUpdate.Status.OK && u.getStatus() != RemoteRefUpdate.Status.UP_TO_DATE) {
                    throw new Exception("rejected " + u.getRemoteName() + ": " + u.getStatus() + " " + u.getMessage()
                            + " " + r.getMessages());
                }
            }
        }
    }

    private static String oneLine(Throwable e) {
        StringBuilder b = new StringBuilder(String.valueOf(e.getMessage()));
        for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
            b.append(" | caused by: ").append(c.getMessage());
        }
        return b.toString().replace("\r", "").replace("\n", " | ");
    }

    // backdatePacks moves the clone's pack files 10 seconds into the past.
    // JGit 4.11 treats a pack file younger than its timestamp resolution
    // (2.5 s) as "racily clean" and scans the pack directory again on every
    // object lookup until then: a commit right after a clone takes seconds
    // of CPU. A user never commits that fast; the test does.
    private static void backdatePacks(File work) {
        File[] packs = new File(work, ".git/objects/pack").listFiles();
        if (packs == null) {
            return;
        }
        long past = System.currentTimeMillis() - 10_000;
        for (File f : packs) {
            f.setLastModified(past);
        }
    }

    // run does one client's steps and reports whether both pushes went as
    // expected.
    private static boolean run(String name, String cloneUrl, String openUrl, String maintUrl, File work) {
        Git git;
        try {
            git = auth(Git.cloneRepository().setURI(cloneUrl).setDirectory(work).setBranch("main"), cloneUrl).call();
            System.out.println(name + " ok clone");
            backdatePacks(work);
        } catch (Exception e) {
            System.out.println(name + " error clone: " + oneLine(e));
            return false;
        }
        try (git) {
            try {
                commit(git, work, "while open");
                push(git, openUrl);
                System.out.println(name + " ok push-open");
            } catch (Exception e) {
                System.out.println(name + " error push-open: " + oneLine(e));
                return false;
            }
            try {
                commit(git, work, "during maintenance");
                push(git, maintUrl);
                System.out.println(name + " ok push-maintenance");
                return false;
            } catch (Exception e) {
                System.out.println(name + " error push-maintenance: " + oneLine(e));
                return true;
            }
        }
    }

    public static void main(String[] args) {
        key = args[0];
        boolean ok = true;
        for (int i = 1; i + 5 <= args.length; i += 5) {
            ok &= run(args[i], args[i + 1], args[i + 2], args[i + 3], new File(args[i + 4]));
        }
        System.exit(ok ? 0 : 1);
    }
}
