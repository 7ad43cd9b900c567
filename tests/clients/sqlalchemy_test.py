"""SQLAlchemy 2 ORM (over psycopg 3), unmodified, against Kestrel: create_all (which reflects
through pg_catalog first), session add/query, update, delete, a rolled-back transaction,
and Inspector reflection (tables, columns, primary key, unique constraints, indexes).
Prints 'sqlalchemy ok' when every check passed."""
import os
import sys
from decimal import Decimal

from sqlalchemy import Numeric, String, create_engine, func, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "sa_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(40), unique=True)
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))


class Note(Base):
    __tablename__ = "sa_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200), index=True)


def check(ok, what):
    if not ok:
        print("FAILED:", what)
        sys.exit(1)


def main():
    port = os.environ.get("KESTREL_PORT", "5433")
    engine = create_engine(f"postgresql+psycopg://root@127.0.0.1:{port}/defaultdb")
    Base.metadata.create_all(engine)
    # A second create_all finds the tables through the catalog and creates nothing.
    Base.metadata.create_all(engine)

    with Session(engine) as s:
        s.add_all([Account(owner=f"owner{i}", balance=Decimal(i * 10)) for i in range(1, 6)])
        s.add(Note(body="hello"))
        s.commit()

    with Session(engine) as s:
        rows = s.scalars(select(Account).order_by(Account.id)).all()
        check([a.owner for a in rows] == [f"owner{i}" for i in range(1, 6)], "query")
        check(s.scalar(select(func.sum(Account.balance))) == Decimal("150.00"), "sum")
        acct = s.scalars(select(Account).where(Account.owner == "owner2")).one()
        acct.balance += Decimal("5.50")
        s.commit()
        s.delete(s.get(Account, 5))
        s.commit()

    # A rolled-back transaction leaves no trace.
    with Session(engine) as s:
        s.get(Account, 1).balance = Decimal("999")
        s.add(Account(owner="ghost"))
        s.flush()
        s.rollback()

    with Session(engine) as s:
        check(s.get(Account, 2).balance == Decimal("25.50"), "update")
        check(s.get(Account, 5) is None, "delete")
        check(s.get(Account, 1).balance == Decimal("10.00"), "rollback of update")
        check(s.scalar(select(func.count()).select_from(Account)) == 4, "rollback of insert")

    insp = inspect(engine)
    check({"sa_accounts", "sa_notes"} <= set(insp.get_table_names()), "get_table_names")
    cols = {c["name"]: c for c in insp.get_columns("sa_accounts")}
    check(list(cols) == ["id", "owner", "balance"], f"get_columns {list(cols)}")
    check(not cols["id"]["nullable"] and not cols["owner"]["nullable"], "nullable")
    check(str(cols["owner"]["type"]) == "VARCHAR(40)", f"type {cols['owner']['type']}")
    check(insp.get_pk_constraint("sa_accounts")["constrained_columns"] == ["id"], "pk")
    uniques = insp.get_unique_constraints("sa_accounts")
    check([u["column_names"] for u in uniques] == [["owner"]], f"uniques {uniques}")
    indexes = insp.get_indexes("sa_notes")
    check([i["column_names"] for i in indexes] == [["body"]], f"indexes {indexes}")
    check(insp.get_foreign_keys("sa_accounts") == [], "foreign keys")

    Base.metadata.drop_all(engine)
    check("sa_accounts" not in inspect(engine).get_table_names(), "drop_all")
    print("sqlalchemy ok")


if __name__ == "__main__":
    main()
