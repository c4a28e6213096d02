"""``zootrain zk secure``: administration straight against ZooKeeper."""

from __future__ import annotations

from zootrain.cli.plumbing import Json, emit_json, fail, out, zk_app, zookeeper


@zk_app.command("secure")
def zk_secure(as_json: Json = False) -> None:
    """(admin) Close every existing znode of the installation to all but the credentials in
    ZOOTRAIN_ZK_AUTH: for nodes made before the credentials were set. Idempotent."""
    from zootrain import acl
    from zootrain.settings import Settings

    with zookeeper(credentials_required=True) as (client, paths):
        credentials = Settings().zk_auth
        assert credentials is not None
        if client.exists(paths.root) is None:
            out.print(f"{paths.root} does not exist yet: nothing to secure", markup=False)
            return
        done = acl.secure(client, paths.root, credentials)
    if as_json:
        emit_json(
            {
                "root": paths.root,
                "secured": done.changed,
                "already": done.already,
                "refused": done.refused,
            }
        )
    else:
        out.print(
            f"{paths.root}: closed {done.changed} znodes to all but ZOOTRAIN_ZK_AUTH's user "
            f"({done.already} already were).",
            soft_wrap=True,
            markup=False,
        )
    if done.refused:
        shown = ", ".join(done.refused[:5])
        fail(f"{len(done.refused)} znodes belong to other credentials and were left: {shown}")
