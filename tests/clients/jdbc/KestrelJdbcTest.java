// JDBC (Debian's libpostgresql-jdbc-java, unmodified) against Kestrel: PreparedStatement,
// batch insert, transactions (commit and rollback), DatabaseMetaData. Run with the source
// launcher: java -cp /usr/share/java/postgresql.jar KestrelJdbcTest.java
import java.sql.*;
import java.util.*;

public class KestrelJdbcTest {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String port = System.getenv().getOrDefault("KESTREL_PORT", "5433");
        String url = "jdbc:postgresql://127.0.0.1:" + port + "/defaultdb";
        try (Connection c = DriverManager.getConnection(url, "root", "")) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jdbc_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(10,2), seen BOOLEAN DEFAULT false)");
                s.execute("CREATE INDEX jdbc_items_name ON jdbc_items (name)");
            }
            // Batch insert through a prepared statement, committed as one transaction.
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("INSERT INTO jdbc_items (id, name, price) VALUES (?, ?, ?)")) {
                for (int i = 1; i <= 50; i++) {
                    p.setLong(1, i);
                    p.setString(2, "item-" + i);
                    p.setBigDecimal(3, new java.math.BigDecimal(i + ".25"));
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                check(counts.length == 50, "batch size " + counts.length);
                for (int n : counts) check(n == 1 || n == Statement.SUCCESS_NO_INFO, "batch count " + n);
            }
            c.commit();
            // A rolled-back transaction leaves nothing behind.
            try (PreparedStatement p = c.prepareStatement("UPDATE jdbc_items SET name = ? WHERE id = ?")) {
                p.setString(1, "changed");
                p.setLong(2, 7);
                check(p.executeUpdate() == 1, "update count");
            }
            c.rollback();
            c.setAutoCommit(true);
            try (PreparedStatement p = c.prepareStatement("SELECT id, name, price, seen FROM jdbc_items WHERE id = ? OR id = ? ORDER BY id")) {
                p.setLong(1, 7);
                p.setLong(2, 50);
                try (ResultSet r = p.executeQuery()) {
                    check(r.next(), "row 7");
                    check(r.getLong(1) == 7 && r.getString(2).equals("item-7"), "row 7 values: " + r.getString(2));
                    check(r.getBigDecimal(3).compareTo(new java.math.BigDecimal("7.25")) == 0, "price 7");
                    check(!r.getBoolean(4), "default false");
                    check(r.next(), "row 50");
                    check(r.getLong(1) == 50, "id 50");
                    check(!r.next(), "two rows");
                }
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*), sum(price) FROM jdbc_items")) {
                check(r.next() && r.getLong(1) == 50, "count");
                check(r.getBigDecimal(2).compareTo(new java.math.BigDecimal("1287.50")) == 0, "sum " + r.getBigDecimal(2));
            }
            // A constraint violation surfaces with PostgreSQL's SQLSTATE.
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO jdbc_items (id, name) VALUES (1, 'dup')");
                check(false, "duplicate key accepted");
            } catch (SQLException e) {
                check("23505".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
            }
            // DatabaseMetaData: the catalog queries pgjdbc sends.
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), md.getDatabaseProductName());
            List<String> tables = new ArrayList<>();
            try (ResultSet r = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (r.next()) {
                    check("TABLE".equals(r.getString("TABLE_TYPE")), "type " + r.getString("TABLE_TYPE"));
                    tables.add(r.getString("TABLE_NAME"));
                }
            }
            check(tables.contains("jdbc_items"), "getTables: " + tables);
            List<String> columns = new ArrayList<>();
            try (ResultSet r = md.getColumns(null, "public", "jdbc_items", "%")) {
                while (r.next()) columns.add(r.getString("COLUMN_NAME") + ":" + r.getString("TYPE_NAME") + ":" + r.getInt("NULLABLE"));
            }
            check(columns.equals(List.of("id:int8:0", "name:text:0", "price:numeric:1", "seen:bool:1")), "getColumns: " + columns);
            List<String> pk = new ArrayList<>();
            try (ResultSet r = md.getPrimaryKeys(null, "public", "jdbc_items")) {
                while (r.next()) pk.add(r.getString("COLUMN_NAME") + ":" + r.getInt("KEY_SEQ") + ":" + r.getString("PK_NAME"));
            }
            check(pk.equals(List.of("id:1:jdbc_items_pkey")), "getPrimaryKeys: " + pk);
            List<String> idx = new ArrayList<>();
            try (ResultSet r = md.getIndexInfo(null, "public", "jdbc_items", false, false)) {
                while (r.next()) idx.add(r.getString("INDEX_NAME") + ":" + r.getString("COLUMN_NAME") + ":" + r.getBoolean("NON_UNIQUE"));
            }
            check(idx.contains("jdbc_items_pkey:id:false") && idx.contains("jdbc_items_name:name:true"), "getIndexInfo: " + idx);
        }
        System.out.println("jdbc ok");
    }
}
